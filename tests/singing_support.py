"""Checks shared by the singing engines' tests: a skip mark for an engine whose tools are
missing, a three-note melody in a voice's range and the pitch of each held note, measured by
autocorrelation."""

import numpy as np
import pytest

from tinysep.data.engines import SINGING_MODULES, VOICE_ENGINES
from tinysep.data.score import SungNote
from tinysep.data.synth import SAMPLE_RATE


def needs_voice_engine(engine: str) -> pytest.MarkDecorator:
    """Skip a test when a voice engine cannot sing with every one of its voices."""
    voices = tuple(VOICE_ENGINES[engine][0])
    return pytest.mark.skipif(SINGING_MODULES[engine].missing_tools(voices) is not None,
                              reason=f"make system-deps installs what the {engine} engine needs")


def three_notes(low: int, steps: tuple[int, int, int] = (5, 12, 2)) -> list[SungNote]:
    """Three 0.6 s notes 0.7 s apart at ``low`` + ``steps`` semitones, no vibrato."""
    return [SungNote(0.2 + 0.7 * i, 0.6, float(low + step), 0.8, 0, True, None, False)
            for i, step in enumerate(steps)]


def f0_by_autocorrelation(x: np.ndarray, low_hz: float = 60.0, high_hz: float = 600.0) -> float:
    """The fundamental of ``x`` (Hz): the lag of its autocorrelation peak."""
    x = x - x.mean()
    ac = np.correlate(x, x, mode="full")[len(x) - 1:]
    lo, hi = int(SAMPLE_RATE / high_hz), int(SAMPLE_RATE / low_hz)
    return SAMPLE_RATE / (lo + int(np.argmax(ac[lo:hi])))


def assert_sung_at_pitch(sung: np.ndarray, melody: list[SungNote], label: str) -> None:
    """``sung`` is a float32 track, starts silent, and holds each note within a quarter tone."""
    assert sung.dtype == np.float32
    assert np.sqrt(np.mean(sung.astype(np.float64) ** 2)) > 1e-2, label
    assert np.all(sung[:int(0.05 * SAMPLE_RATE)] == 0)  # nothing before the first syllable
    for note in melody:
        # the held middle of each note (no vibrato)
        a = int((note.start + 0.2) * SAMPLE_RATE)
        b = int((note.start + note.duration - 0.15) * SAMPLE_RATE)
        midi = 69 + 12 * np.log2(f0_by_autocorrelation(sung[a:b].astype(np.float64)) / 440.0)
        assert abs(midi - note.pitch) < 0.5, (label, note.pitch, midi)
