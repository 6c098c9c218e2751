"""Physical and FM models: plucked and bowed strings, FM keys and bells, modal drums.

Plucked strings are Karplus-Strong loops (a noise burst in a delay line with an averaging,
fractionally tuned loss filter); bowed strings are a band-limited sawtooth with bow noise,
vibrato and a slow attack through a resonant body; keys and bells are two-operator FM with
decaying modulation index (harmonic ratios for keys, inharmonic for bells); drums are modal
membranes (Bessel mode ratios) and filtered noise. Each song draws its own instrument per role.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, lfilter, sosfilt

from tinysep.data.placing import place_hits, place_notes
from tinysep.data.score import Note

KINDS = {
    "pad": ("bowed", "fm_keys", "bell"),
    "piano": ("pluck", "fm_keys", "bell"),
    "organ": ("bowed", "fm_keys", "pluck"),
    "lead": ("bowed", "pluck", "bell", "fm_keys"),
    "bass": ("pluck", "fm_bass"),
}
MEMBRANE_RATIOS = (1.0, 1.59, 2.14, 2.30, 2.65, 2.92)


@dataclass(frozen=True)
class Model:
    """One physical/FM instrument: its kind and a few shape parameters."""

    kind: str
    brightness: float  # 0..1
    decay: float  # seconds (plucks, bells, keys)
    ratio: float  # FM modulator/carrier ratio
    index: float  # FM peak modulation index
    detune_cents: float


def midi_hz(pitch: float) -> float:
    return float(440.0 * 2 ** ((pitch - 69) / 12))


def random_model(rng: np.random.Generator, role: str) -> Model:
    """Draw an instrument for an arrangement role."""
    kind = str(rng.choice(KINDS[role]))
    ratio = {"bell": float(rng.choice((1.4, 2.76, 3.5, 1.41))),
             "fm_keys": float(rng.choice((1.0, 2.0, 3.0, 14.0))),
             "fm_bass": float(rng.choice((0.5, 1.0, 2.0)))}.get(kind, 1.0)
    return Model(kind=kind, brightness=float(rng.uniform(0.3, 0.95)),
                 decay=float(rng.uniform(0.6, 3.0)), ratio=ratio,
                 index=float(rng.uniform(0.8, 5.0)), detune_cents=float(rng.uniform(2, 12)))


def _pluck(f0: float, duration: float, model: Model, sr: int,
           rng: np.random.Generator) -> np.ndarray:
    n = int((duration + 0.3) * sr)
    period = sr / f0 - 0.5  # the averaging filter delays half a sample
    delay = int(np.floor(period))
    frac = period - delay
    if delay < 2:
        return np.zeros(n, np.float32)
    # loss per period so that the tone falls 60 dB in `decay` seconds
    g = 10 ** (-3.0 / (model.decay * f0))
    a = np.zeros(delay + 3)
    a[0] = 1.0
    # averaging filter (0.5, 0.5) convolved with linear interpolation (1 - frac, frac)
    taps = np.convolve([0.5, 0.5], [1 - frac, frac]) * g
    a[delay:delay + 3] -= taps
    burst = rng.standard_normal(delay).astype(np.float64)
    cutoff = 0.1 + 0.85 * model.brightness
    burst = lfilter([cutoff], [1, cutoff - 1], burst)
    x = np.zeros(n)
    x[:delay] = burst - burst.mean()
    y = lfilter([1.0], a, x)
    release = np.ones(n)
    end = int(duration * sr)
    release[end:] = np.exp(-np.arange(n - end) / (0.05 * sr))
    return (y * release).astype(np.float32)


def _saw(phase: np.ndarray, f0: float, sr: int) -> np.ndarray:
    """Band-limited sawtooth from its harmonics below 0.45 sr."""
    out = np.zeros_like(phase)
    for k in range(1, max(2, int(0.45 * sr / f0))):
        out += np.sin(k * phase) / k
    return out


def _bowed(f0: float, duration: float, model: Model, sr: int,
           rng: np.random.Generator) -> np.ndarray:
    n = int((duration + 0.25) * sr)
    t = np.arange(n) / sr
    vib = 1 + (2 ** (rng.uniform(15, 35) / 1200) - 1) * np.sin(2 * np.pi * rng.uniform(4.5, 6.0)
                                                                 * t) * np.minimum(t / 0.4, 1)
    phase = 2 * np.pi * np.cumsum(f0 * vib) / sr
    tone = _saw(phase, f0, sr) * (0.6 + 0.4 * model.brightness)
    tone += 0.03 * rng.standard_normal(n) * (1 + np.sin(phase))  # bow noise, pitch-synchronous
    env = np.minimum(t / rng.uniform(0.05, 0.25), 1.0)
    end = int(duration * sr)
    env[end:] *= np.exp(-(t[end:] - t[end]) / 0.08)
    body = np.zeros(n)
    for freq, q in ((280, 6), (460, 8), (1200 * (0.7 + model.brightness), 5)):
        if freq < 0.45 * sr:
            b, a = butter(2, [freq / (1 + 0.5 / q), min(freq * (1 + 0.5 / q), 0.49 * sr)],
                          btype="band", fs=sr)
            body += lfilter(b, a, tone)
    return ((0.5 * tone * (0.3 + 0.4 * model.brightness) + body) * env).astype(np.float32)


def _fm(f0: float, duration: float, model: Model, sr: int, rng: np.random.Generator,
        sustain: bool) -> np.ndarray:
    tail = 0.4 if sustain else model.decay
    n = int((duration + tail) * sr)
    t = np.arange(n) / sr
    index = model.index * np.exp(-t / (0.15 + 0.5 * model.brightness))
    detune = 2 ** (model.detune_cents / 1200)
    out = np.zeros(n)
    for d in (1.0, detune):
        mod = index * np.sin(2 * np.pi * f0 * d * model.ratio * t)
        out += np.sin(2 * np.pi * f0 * d * t + mod)
    attack = np.minimum(t / 0.004, 1.0)
    if sustain:
        env = attack * np.exp(-t / (4 * model.decay))
        end = int(duration * sr)
        env[end:] *= np.exp(-(t[end:] - t[end]) / 0.06)
    else:
        env = attack * np.exp(-t / (model.decay / 3))
    return (0.5 * out * env).astype(np.float32)


def render_note(note: Note, model: Model, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One note of ``model`` at velocity 1."""
    f0 = midi_hz(note.pitch)
    if model.kind == "pluck":
        return _pluck(f0, note.duration, model, sr, rng)
    if model.kind == "bowed":
        return _bowed(f0, note.duration, model, sr, rng)
    return _fm(f0, note.duration, model, sr, rng, sustain=model.kind in ("fm_keys", "fm_bass"))


def render_part(notes: list[Note], model: Model, n_samples: int, sr: int,
                rng: np.random.Generator) -> np.ndarray:
    """All notes of one instrument (`placing.place_notes`: each distinct note rendered once)."""
    return place_notes(notes, lambda note: render_note(note, model, sr, rng), n_samples, sr)


def _membrane(f0: float, decay: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(decay * 4 * sr)
    t = np.arange(n) / sr
    sweep = 1 + 0.6 * np.exp(-t / 0.03)  # tension rises on the strike
    out = np.zeros(n)
    for k, ratio in enumerate(MEMBRANE_RATIOS):
        amp = rng.uniform(0.3, 1.0) / (1 + k)
        out += amp * np.sin(2 * np.pi * np.cumsum(f0 * ratio * sweep) / sr) * np.exp(
            -t * (1 + k) / decay)
    return out


def _noise_hit(low: float, decay: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(decay * 5 * sr)
    t = np.arange(n) / sr
    sos = butter(4, min(low, 0.45 * sr), btype="high", fs=sr, output="sos")
    return sosfilt(sos, rng.standard_normal(n)) * np.exp(-t / decay)


def render_drums(hits: dict[str, list[tuple[float, float]]], n_samples: int, sr: int,
                 rng: np.random.Generator) -> np.ndarray:
    """Modal kick and snare (membrane plus snare-wire noise) and noise hats at the hits."""
    kick = _membrane(rng.uniform(45, 70), rng.uniform(0.08, 0.2), sr, rng)
    snare = 0.6 * _membrane(rng.uniform(160, 240), rng.uniform(0.05, 0.12), sr, rng)
    wires = _noise_hit(rng.uniform(1500, 3500), rng.uniform(0.05, 0.15), sr, rng)
    snare = np.pad(snare, (0, max(0, len(wires) - len(snare))))
    snare[:len(wires)] += rng.uniform(0.4, 1.0) * wires
    hat = _noise_hit(rng.uniform(5000, 7000), rng.uniform(0.02, 0.09), sr, rng)
    sounds = {"kick": kick, "snare": snare, "hat": 0.4 * hat}
    return place_hits(sounds, hits, n_samples, sr)
