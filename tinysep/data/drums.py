"""A drum kit from noise and swept sines: kick, snare, hi-hat, one kit per song.

Each drum is a one-shot sample drawn per song and replayed at every hit with the hit's
velocity, as a drum machine does (so drum bars repeat exactly, up to velocity).
"""

from __future__ import annotations

import numpy as np
from scipy.signal import butter, sosfilt

from tinysep.data.placing import place_hits


def kick(rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """Sine swept down from ~150 Hz to ~50 Hz with an exponential decay and a click."""
    n = int(0.45 * sample_rate)
    t = np.arange(n) / sample_rate
    f_start, f_end = rng.uniform(110.0, 180.0), rng.uniform(42.0, 60.0)
    sweep = rng.uniform(0.02, 0.05)
    freq = f_end + (f_start - f_end) * np.exp(-t / sweep)
    body = np.sin(2 * np.pi * np.cumsum(freq) / sample_rate) * np.exp(-t / rng.uniform(0.08, 0.2))
    click = rng.standard_normal(n) * np.exp(-t / 0.002) * rng.uniform(0.1, 0.4)
    return (body + click).astype(np.float32)


def snare(rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """A short drum-head tone plus band-passed noise (the wires)."""
    n = int(0.35 * sample_rate)
    t = np.arange(n) / sample_rate
    tone = np.sin(2 * np.pi * rng.uniform(170.0, 240.0) * t) * np.exp(-t / rng.uniform(0.03, 0.06))
    sos = butter(2, [rng.uniform(700.0, 1500.0), rng.uniform(5000.0, 7500.0)], btype="bandpass",
                 fs=sample_rate, output="sos")
    wires = sosfilt(sos, rng.standard_normal(n)) * np.exp(-t / rng.uniform(0.06, 0.14))
    return (rng.uniform(0.3, 0.7) * tone + wires).astype(np.float32)


def hat(rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """High-passed noise with a fast decay (a closed hi-hat)."""
    n = int(0.2 * sample_rate)
    t = np.arange(n) / sample_rate
    sos = butter(4, rng.uniform(4500.0, 6500.0), btype="highpass", fs=sample_rate, output="sos")
    noise = sosfilt(sos, rng.standard_normal(n)) * np.exp(-t / rng.uniform(0.015, 0.05))
    return noise.astype(np.float32)


_DRUMS = {"kick": kick, "snare": snare, "hat": hat}
_LEVELS = {"kick": 1.0, "snare": 0.8, "hat": 0.35}


def render_drums(hits: dict[str, list[tuple[float, float]]], n_samples: int, sample_rate: int,
                 rng: np.random.Generator) -> np.ndarray:
    """The drum track: every drum's one-shot, at its own level, placed at its (time,
    velocity) hits."""
    sounds = {}
    for name in sorted(hits):
        sample = _DRUMS[name](rng, sample_rate)
        sample *= np.float32(_LEVELS[name] * rng.uniform(0.7, 1.0) / (np.max(np.abs(sample))
                                                                       + 1e-9))
        sounds[name] = sample
    return place_hits(sounds, hits, n_samples, sample_rate, normalize=False)
