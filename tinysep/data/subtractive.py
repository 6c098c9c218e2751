"""Analog-style subtractive synthesis and drum machines, the sound of synth pop and dance.

Each part plays detuned band-limited oscillators (PolyBLEP saw, square and pulse; a
triangle; for a bass a square an octave below) through a resonant low-pass filter whose
cutoff a per-note envelope sweeps, shaped by an ADSR amplitude envelope. The drums are a
drum machine's: a sine kick whose pitch falls, a snare of two tones and noise or a hand
clap of noise bursts, and hats from six detuned square waves at inharmonic ratios. Each song
draws its own patch per role and its own kit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, sosfilt

from tinysep.data.placing import place_hits, place_notes
from tinysep.data.score import Note

WAVES = ("saw", "square", "pulse", "triangle")
# Oscillator waves per arrangement role, and the pool of detuned copies each may use.
ROLE_WAVES = {"pad": ("saw", "pulse", "triangle"), "piano": ("saw", "square", "pulse"),
              "organ": ("square", "pulse", "triangle"), "lead": ("saw", "square", "pulse"),
              "bass": ("saw", "square", "pulse")}
FILTER_BLOCK = 32  # samples per filter coefficient update (2 ms)
MAX_CUTOFF_FRACTION = 0.45  # of the sample rate
HAT_RATIOS = (1.0, 1.483, 1.800, 2.546, 2.630, 3.897)  # square-wave cluster of a metal hat


@dataclass(frozen=True)
class Patch:
    """One synthesizer sound: oscillators, filter with its envelope, amplitude envelope."""

    wave: str
    voices: int  # detuned copies of the oscillator (1 = plain, 3-5 = a "supersaw")
    detune_cents: float  # spread of the copies
    pulse_width: float  # of the pulse wave, 0-1
    sub_level: float  # a square one octave below (basses)
    cutoff_hz: float  # where the filter rests
    envelope_octaves: float  # how far the filter envelope opens it on a note
    filter_decay: float  # seconds for the filter envelope to fall by 1/e
    resonance: float  # filter Q
    attack: float  # amplitude ADSR, seconds / level
    decay: float
    sustain: float
    release: float


def midi_hz(pitch: float) -> float:
    return float(440.0 * 2 ** ((pitch - 69) / 12))


def random_patch(rng: np.random.Generator, role: str) -> Patch:
    """Draw a sound for an arrangement role: slow wide pads, plucked stabs, held organs,
    resonant leads and basses."""
    wave = str(rng.choice(ROLE_WAVES[role]))
    pad, plucked = role == "pad", role in ("piano", "bass")
    return Patch(
        wave=wave,
        voices=int(rng.integers(3, 6)) if pad else int(rng.choice((1, 1, 2, 3))),
        detune_cents=float(rng.uniform(5, 25)),
        pulse_width=float(rng.uniform(0.15, 0.5)),
        sub_level=float(rng.uniform(0.3, 0.8)) if role == "bass" else 0.0,
        cutoff_hz=float(rng.uniform(300, 1200) if plucked else rng.uniform(600, 3000)),
        envelope_octaves=float(rng.uniform(1.5, 4.0) if plucked else rng.uniform(0.0, 2.0)),
        filter_decay=float(rng.uniform(0.05, 0.3) if plucked else rng.uniform(0.3, 1.5)),
        resonance=float(rng.uniform(0.7, 6.0)),
        attack=float(rng.uniform(0.1, 0.6) if pad else rng.uniform(0.002, 0.02)),
        decay=float(rng.uniform(0.1, 0.6)),
        sustain=float(rng.uniform(0.0, 0.5) if plucked else rng.uniform(0.6, 1.0)),
        release=float(rng.uniform(0.2, 0.8) if pad else rng.uniform(0.03, 0.2)),
    )


def _poly_blep(t: np.ndarray, dt: float) -> np.ndarray:
    """The correction that takes a naive wave's jump at phase 0 down to band-limited."""
    out = np.zeros_like(t)
    head = t < dt
    x = t[head] / dt
    out[head] = 2 * x - x * x - 1
    tail = t > 1 - dt
    x = (t[tail] - 1) / dt
    out[tail] = x * x + 2 * x + 1
    return out


def _saw(phase: np.ndarray, dt: float) -> np.ndarray:
    return 2 * phase - 1 - _poly_blep(phase, dt)


def _oscillator(wave: str, f0: float, n: int, sr: int, pulse_width: float,
                start_phase: float) -> np.ndarray:
    """``n`` samples of one band-limited oscillator at ``f0`` Hz."""
    dt = f0 / sr
    phase = (start_phase + dt * np.arange(n)) % 1.0
    if wave == "saw":
        return _saw(phase, dt)
    if wave == "triangle":
        return 4 * np.abs(phase - 0.5) - 1
    width = 0.5 if wave == "square" else pulse_width
    return _saw(phase, dt) - _saw((phase + 1 - width) % 1.0, dt)  # zero mean at any width


def _resonant_lowpass(x: np.ndarray, cutoff: np.ndarray, q: float, sr: int) -> np.ndarray:
    """A two-pole resonant low-pass whose cutoff (Hz per sample) changes every block."""
    out = np.empty_like(x)
    state = np.zeros((1, 2))
    for start in range(0, len(x), FILTER_BLOCK):
        stop = min(len(x), start + FILTER_BLOCK)
        w = 2 * np.pi * min(float(cutoff[start]), MAX_CUTOFF_FRACTION * sr) / sr
        alpha = np.sin(w) / (2 * q)
        cos = np.cos(w)
        a0 = 1 + alpha
        b = np.array([(1 - cos) / 2, 1 - cos, (1 - cos) / 2]) / a0
        a = np.array([1.0, -2 * cos / a0, (1 - alpha) / a0])
        out[start:stop], state = sosfilt(np.concatenate([b, a])[None, :], x[start:stop],
                                         zi=state)
    return out


def render_note(note: Note, patch: Patch, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One note of ``patch`` at velocity 1 (its release included)."""
    f0 = midi_hz(note.pitch)
    n = int((note.duration + patch.release) * sr)
    held = int(note.duration * sr)
    t = np.arange(n) / sr
    tone = np.zeros(n)
    for k in range(patch.voices):
        offset = 0.0 if patch.voices == 1 else (k / (patch.voices - 1) - 0.5)
        freq = f0 * 2 ** (offset * patch.detune_cents / 1200)
        tone += _oscillator(patch.wave, freq, n, sr, patch.pulse_width, rng.uniform())
    tone /= np.sqrt(patch.voices)
    if patch.sub_level > 0:
        tone += patch.sub_level * _oscillator("square", f0 / 2, n, sr, 0.5, 0.0)
    cutoff = patch.cutoff_hz * 2 ** (patch.envelope_octaves * np.exp(-t / patch.filter_decay))
    cutoff = np.minimum(cutoff, MAX_CUTOFF_FRACTION * sr)
    filtered = _resonant_lowpass(tone, cutoff, patch.resonance, sr)
    env = np.minimum(t / patch.attack, 1.0)
    falling = t > patch.attack
    env[falling] = patch.sustain + (1 - patch.sustain) * np.exp(
        -(t[falling] - patch.attack) / patch.decay)
    if held < n:
        env[held:] = env[max(held - 1, 0)] * np.exp(-(t[held:] - t[held]) / (patch.release / 4))
    return (0.3 * filtered * env).astype(np.float32)


def render_part(notes: list[Note], patch: Patch, n_samples: int, sr: int,
                rng: np.random.Generator) -> np.ndarray:
    """All notes of one part (`placing.place_notes`: each distinct note rendered once)."""
    return place_notes(notes, lambda note: render_note(note, patch, sr, rng), n_samples, sr)


def _kick(sr: int, rng: np.random.Generator) -> np.ndarray:
    decay = rng.uniform(0.15, 0.6)
    n = int(4 * decay * sr)
    t = np.arange(n) / sr
    low, high = rng.uniform(40, 60), rng.uniform(120, 260)
    freq = low + (high - low) * np.exp(-t / rng.uniform(0.01, 0.05))
    body = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / decay)
    click = rng.uniform(0.0, 0.4) * rng.standard_normal(n) * np.exp(-t / 0.003)
    return body + click


def _snare(sr: int, rng: np.random.Generator) -> np.ndarray:
    decay = rng.uniform(0.08, 0.25)
    n = int(4 * decay * sr)
    t = np.arange(n) / sr
    if rng.random() < 0.4:  # a hand clap: a few noise bursts, then a tail
        bursts = np.zeros(n)
        for k in range(int(rng.integers(3, 5))):
            start = int(k * rng.uniform(0.008, 0.014) * sr)
            bursts[start:] += np.exp(-(t[: n - start]) / 0.006)
        noise = rng.standard_normal(n) * (bursts + 0.5 * np.exp(-t / decay))
        sos = butter(2, [800, min(2500, 0.45 * sr)], btype="band", fs=sr, output="sos")
        return sosfilt(sos, noise)
    tone = sum(np.sin(2 * np.pi * f * t) for f in (rng.uniform(160, 220), rng.uniform(300, 360)))
    sos = butter(2, min(rng.uniform(1000, 3000), 0.45 * sr), btype="high", fs=sr, output="sos")
    noise = sosfilt(sos, rng.standard_normal(n))
    return (0.5 * tone * np.exp(-t / (decay / 2)) + rng.uniform(0.5, 1.0) * noise
            * np.exp(-t / decay))


def _hat(sr: int, rng: np.random.Generator) -> np.ndarray:
    decay = rng.uniform(0.02, 0.12)
    n = int(5 * decay * sr)
    t = np.arange(n) / sr
    base = rng.uniform(250, 450)
    metal = sum(np.sign(np.sin(2 * np.pi * base * r * t + rng.uniform(0, 2 * np.pi)))
                for r in HAT_RATIOS)
    sos = butter(4, min(rng.uniform(5000, 7000), 0.45 * sr), btype="high", fs=sr, output="sos")
    return sosfilt(sos, metal) * np.exp(-t / decay)


def render_drums(hits: dict[str, list[tuple[float, float]]], n_samples: int, sr: int,
                 rng: np.random.Generator) -> np.ndarray:
    """A drum machine's kick, snare or clap and hat at the hits."""
    sounds = {"kick": _kick(sr, rng), "snare": _snare(sr, rng), "hat": 0.4 * _hat(sr, rng)}
    return place_hits(sounds, hits, n_samples, sr)
