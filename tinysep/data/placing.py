"""Placing rendered sounds on a track: a part's notes and a drum kit's hits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from tinysep.data.score import Note


def place_notes(notes: list[Note], render: Callable[[Note], np.ndarray], n_samples: int,
                sample_rate: int) -> np.ndarray:
    """All notes of one part summed into a float32 track of ``n_samples``.

    ``render`` plays a note at velocity 1. A (pitch, length) pair is rendered once, in the
    order the notes come, and replayed at each velocity, as a sampler would: repeated bars
    repeat exactly, and a song costs only its distinct notes.
    """
    track = np.zeros(n_samples, dtype=np.float32)
    rendered: dict[tuple[float, int], np.ndarray] = {}
    for note in notes:
        start = int(round(note.start * sample_rate))
        if start >= n_samples:
            continue
        key = (note.pitch, int(round(note.duration * sample_rate)))
        if key not in rendered:
            rendered[key] = render(replace(note, velocity=1.0))
        wave = rendered[key]
        end = min(n_samples, start + len(wave))
        track[start:end] += np.float32(note.velocity) * wave[: end - start]
    return track


def place_hits(sounds: dict[str, np.ndarray], hits: dict[str, list[tuple[float, float]]],
               n_samples: int, sample_rate: int, normalize: bool = True) -> np.ndarray:
    """Each drum's sound (peak-normalised unless ``normalize`` is False) at its (time,
    velocity) hits: a float32 track."""
    track = np.zeros(n_samples, dtype=np.float32)
    for name, drum_hits in sorted(hits.items()):
        sample = sounds[name]
        if normalize:
            sample = sample / (np.max(np.abs(sample)) + 1e-9)
        sample = sample.astype(np.float32)
        for time, velocity in drum_hits:
            start = int(round(time * sample_rate))
            if 0 <= start < n_samples:
                end = min(n_samples, start + len(sample))
                track[start:end] += np.float32(velocity) * sample[:end - start]
    return track
