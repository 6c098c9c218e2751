"""Pitched accompaniment instruments: additive synthesis of notes with per-song timbres.

Each instrument is a set of partials (amplitudes, slight inharmonicity), an envelope and
a per-partial decay, drawn at random per song: a detuned pad, a struck-string piano,
a drawbar organ, a reedy or brassy lead in the vocal range, and a bass. Partials above
``MAX_PARTIAL_HZ`` are dropped so nothing aliases at 16 kHz. Vectorised: one
``sin`` over a (samples, partials) matrix per note, float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinysep.data.placing import place_notes
from tinysep.data.score import Note

MAX_PARTIAL_HZ = 7_000.0
TWO_PI = np.float32(2.0 * np.pi)


@dataclass(frozen=True)
class Timbre:
    """How one instrument sounds: partials, envelope, decay, detune, vibrato, tremolo."""

    amplitudes: np.ndarray  # (partials,)
    ratios: np.ndarray  # frequency of each partial over the fundamental
    attack: float  # seconds
    release: float  # seconds after the note ends
    decay: float  # 1/seconds for the fundamental, 0 = sustained
    decay_per_partial: float  # extra 1/seconds per partial number (bright attack, dull tail)
    detune_cents: float = 0.0  # a second, detuned voice (chorus), 0 = none
    vibrato_cents: float = 0.0
    vibrato_hz: float = 5.0
    tremolo: float = 0.0  # depth of a slow amplitude modulation
    tremolo_hz: float = 6.0


def midi_to_hz(pitch: float | np.ndarray) -> float | np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(pitch, dtype=np.float64) - 69.0) / 12.0)


def random_timbre(rng: np.random.Generator, kind: str) -> Timbre:
    """A random timbre for an instrument kind: pad, piano, organ, lead or bass."""
    if kind == "pad":
        k = np.arange(1, 13, dtype=np.float64)
        amps = k ** -rng.uniform(1.0, 1.6) / (1.0 + (k / rng.uniform(4.0, 9.0)) ** 2)
        return Timbre(amps, k, attack=rng.uniform(0.12, 0.4), release=rng.uniform(0.25, 0.5),
                      decay=0.0, decay_per_partial=0.0, detune_cents=rng.uniform(5.0, 12.0),
                      tremolo=rng.uniform(0.0, 0.15), tremolo_hz=rng.uniform(0.3, 1.5))
    if kind == "piano":
        k = np.arange(1, 17, dtype=np.float64)
        strike = rng.uniform(0.08, 0.22)
        amps = k ** -rng.uniform(0.8, 1.3) * (0.15 + np.abs(np.sin(np.pi * k * strike)))
        ratios = k * np.sqrt(1.0 + rng.uniform(0.0, 3e-4) * k**2)
        return Timbre(amps, ratios, attack=0.003, release=rng.uniform(0.08, 0.2),
                      decay=1.0 / rng.uniform(0.6, 1.6), decay_per_partial=rng.uniform(0.3, 1.2))
    if kind == "organ":
        k = np.array([1.0, 2.0, 3.0, 4.0, 6.0, 8.0])
        amps = rng.uniform(0.1, 1.0, size=len(k)) * np.array([1.0, 0.9, 0.6, 0.5, 0.35, 0.3])
        amps[0] = max(amps[0], 0.5)
        return Timbre(amps, k, attack=rng.uniform(0.005, 0.02), release=rng.uniform(0.03, 0.08),
                      decay=0.0, decay_per_partial=0.0, tremolo=rng.uniform(0.05, 0.25),
                      tremolo_hz=rng.uniform(5.0, 7.0))
    if kind == "lead":
        k = np.arange(1, 15, dtype=np.float64)
        if rng.random() < 0.5:  # reed: mostly odd partials
            amps = np.where(k % 2 == 1, 1.0, rng.uniform(0.05, 0.25)) / k
        else:  # brass: bright, rising to a peak then falling
            amps = k ** 0.5 * np.exp(-k / rng.uniform(2.0, 4.0))
        return Timbre(amps, k, attack=rng.uniform(0.02, 0.06), release=rng.uniform(0.05, 0.12),
                      decay=0.0, decay_per_partial=0.0, vibrato_cents=rng.uniform(5.0, 20.0),
                      vibrato_hz=rng.uniform(4.5, 6.5))
    if kind == "bass":
        k = np.arange(1, 11, dtype=np.float64)
        amps = k ** -rng.uniform(1.2, 2.0)
        return Timbre(amps, k, attack=0.005, release=rng.uniform(0.04, 0.1),
                      decay=1.0 / rng.uniform(0.5, 2.0), decay_per_partial=rng.uniform(0.2, 1.0))
    raise ValueError(f"unknown instrument kind {kind!r}")


def _envelope(t: np.ndarray, duration: float, timbre: Timbre) -> np.ndarray:
    """Attack ramp, hold, then a linear release after ``duration`` (float32)."""
    env = np.minimum(t / np.float32(max(timbre.attack, 1e-4)), np.float32(1.0))
    release = np.clip((t - np.float32(duration)) / np.float32(timbre.release), 0.0, 1.0)
    env *= np.float32(1.0) - release
    return env


def render_note(note: Note, timbre: Timbre, sample_rate: int,
                rng: np.random.Generator) -> np.ndarray:
    """One note (including its release tail) as float32 samples."""
    n = max(1, int(round((note.duration + timbre.release) * sample_rate)))
    t64 = np.arange(n, dtype=np.float64) / sample_rate
    t = t64.astype(np.float32)
    f0 = float(midi_to_hz(note.pitch))
    keep = (timbre.ratios * f0 < MAX_PARTIAL_HZ) & (
        timbre.amplitudes >= 1e-3 * timbre.amplitudes.max())  # drop what is below -60 dB
    ratios = timbre.ratios[keep].astype(np.float32)
    amps = timbre.amplitudes[keep].astype(np.float32)
    if len(ratios) == 0:
        return np.zeros(n, dtype=np.float32)

    if timbre.vibrato_cents:
        onset = np.clip((t64 - 0.15) / 0.3, 0.0, 1.0)
        cents = timbre.vibrato_cents * onset * np.sin(2 * np.pi * timbre.vibrato_hz * t64)
        cycles = np.cumsum(f0 * 2.0 ** (cents / 1200.0)) / sample_rate
    else:
        cycles = f0 * t64
    voices = [cycles]
    if timbre.detune_cents:
        voices.append(cycles * 2.0 ** (timbre.detune_cents / 1200.0))

    wave = np.zeros(n, dtype=np.float32)
    partials = np.empty((n, len(ratios)), dtype=np.float32)
    decaying = None
    if timbre.decay or timbre.decay_per_partial:
        decay = (timbre.decay + timbre.decay_per_partial * (ratios - 1.0)).astype(np.float32)
        decaying = np.exp(np.multiply(t[:, None], -decay[None, :]))
    for v, cyc in enumerate(voices):
        phase = ((cyc + rng.random()) % 1.0).astype(np.float32)
        np.sin(np.multiply(phase[:, None], (TWO_PI * ratios)[None, :], out=partials), out=partials)
        if decaying is not None:
            partials *= decaying
        wave += (partials @ amps) * np.float32(1.0 if v == 0 else 0.7)
    env = _envelope(t, note.duration, timbre)
    if timbre.tremolo:
        env *= np.float32(1.0) - np.float32(timbre.tremolo) * (
            0.5 + 0.5 * np.sin(TWO_PI * np.float32(timbre.tremolo_hz) * t + rng.uniform(0, 6.3)))
    return wave * env * np.float32(note.velocity)


def render_part(notes: list[Note], timbre: Timbre, n_samples: int, sample_rate: int,
                rng: np.random.Generator) -> np.ndarray:
    """All notes of one instrument summed into a float32 track of ``n_samples``
    (`placing.place_notes`: each distinct note rendered once)."""
    return place_notes(notes, lambda note: render_note(note, timbre, sample_rate, rng),
                       n_samples, sample_rate)
