"""Speech sung by pitch-synchronous overlap-add (TD-PSOLA), for engines whose speech
synthesizer cannot sing: each spoken syllable's voiced nucleus is cut into two-period grains
centred on its pitch marks, and the grains are laid again at the sung pitch, so formants
stay put while the pitch follows the melody, with the same portamento and vibrato as the
Festival singers (`singing.sung_pitch_hz`). No vocoder resynthesizes the speech.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinysep.data.audio_io import read_mono
from tinysep.data.score import SungNote
from tinysep.data.singing import (
    FRAME_MS,
    VoiceError,
    VoiceSinger,
    note_frames,
    sung_pitch_hz,
    syllable_groups,
)

ONSET_FADE_SECONDS = 0.01  # the fade-in of a shortened consonant


@dataclass(frozen=True)
class SpokenSyllable:
    """One spoken syllable and the pitch marks of its voiced nucleus (samples)."""

    audio: np.ndarray  # float64
    marks: np.ndarray  # int, ascending; marks[0] starts the nucleus
    periods: np.ndarray  # int, the pitch period at each mark

    @property
    def onset(self) -> int:
        """Samples of consonant before the voiced nucleus."""
        return int(self.marks[0])


def missing_tools(program: str, package: str, synthesizer: str, voices: tuple[str, ...],
                  known: Container[str]) -> str | None:
    """What an engine singing through ``program`` (from Debian ``package``) lacks to sing
    with ``voices``, or None when it can run."""
    if shutil.which(program) is None:
        return f"the {program} program (Debian package {package})"
    unknown = [v for v in voices if v not in known]
    if unknown:
        return f"the {synthesizer} voice(s) {', '.join(unknown)}"
    return missing_pitch_analysis()


def missing_pitch_analysis() -> str | None:
    """The WORLD package that finds the pitch marks, when it is not installed, else None."""
    try:
        import pyworld  # noqa: F401
    except ImportError:
        return "the WORLD analysis package pyworld (`make install`)"
    return None


def pitch_marks(x: np.ndarray, f0: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Pitch marks of the longest voiced stretch of ``x`` (``f0`` per `FRAME_MS` frame, 0
    unvoiced): one per period, each on the waveform's main peak of its period."""
    per_frame = sample_rate * FRAME_MS / 1000.0
    voiced = np.concatenate([[0], (f0 > 0).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(voiced))
    if edges.size < 2:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    lengths = edges[1::2] - edges[::2]
    longest = int(np.argmax(lengths))
    first_frame, stop_frame = int(edges[2 * longest]), int(edges[2 * longest + 1])
    start = int(first_frame * per_frame)
    stop = min(len(x), int(stop_frame * per_frame))
    sign = 1.0 if np.max(x[start:stop], initial=0.0) >= -np.min(x[start:stop], initial=0.0) \
        else -1.0
    y = sign * x

    def period_at(sample: int) -> int:
        frame = min(len(f0) - 1, max(first_frame, min(stop_frame - 1, int(sample / per_frame))))
        return max(2, int(round(sample_rate / f0[frame])))

    period = period_at(start)
    mark = start + int(np.argmax(y[start:start + period]))
    marks, periods = [], []
    while mark < stop:
        period = period_at(mark)
        marks.append(mark)
        periods.append(period)
        guess = mark + period
        lo, hi = guess - period // 4, min(len(y), guess + period // 4 + 1)
        if lo >= stop or hi <= lo:
            break
        mark = lo + int(np.argmax(y[lo:hi]))
    return np.asarray(marks, dtype=int), np.asarray(periods, dtype=int)


def spoken_syllable(x: np.ndarray, sample_rate: int, low_note: int,
                    max_onset_seconds: float | None = None) -> SpokenSyllable | None:
    """One spoken syllable trimmed to its loud part, with the pitch marks of its voiced
    nucleus; None when nothing in it is loud or voiced for four periods. ``low_note`` (MIDI)
    is the voice's lowest note: pitch is sought from an octave below it (so no subharmonic
    passes for it) up to two octaves above that. A consonant longer than
    ``max_onset_seconds`` keeps only its end, faded in (singers shorten consonants)."""
    import pyworld

    loud = np.flatnonzero(np.abs(x) > 0.02 * np.max(np.abs(x), initial=0.0))
    if loud.size == 0:
        return None
    x = x[loud[0]:loud[-1] + 1]
    floor = 440.0 * 2 ** ((low_note - 12 - 69) / 12)
    f0, t = pyworld.dio(x, sample_rate, frame_period=FRAME_MS, f0_floor=floor, f0_ceil=floor * 4)
    f0 = pyworld.stonemask(x, f0, t, sample_rate)
    marks, periods = pitch_marks(x, f0, sample_rate)
    if marks.size < 4:
        return None
    if max_onset_seconds is not None and marks[0] > max_onset_seconds * sample_rate:
        cut = int(marks[0] - max_onset_seconds * sample_rate)
        x, marks = x[cut:].copy(), marks - cut
        fade = min(int(marks[0]), int(ONSET_FADE_SECONDS * sample_rate))
        x[:fade] *= np.linspace(0.0, 1.0, fade, endpoint=False)
    return SpokenSyllable(x / np.max(np.abs(x)), marks, periods)


def spoken_bank(engine: str, voice: str, texts: Sequence[str],
                command: Callable[[str, Path], list[str]], sample_rate: int, low_note: int,
                timeout: float, max_onset_seconds: float | None = None
                ) -> tuple[SpokenSyllable, ...]:
    """Each of ``texts`` spoken once by the program ``command(text, wav_path)`` runs, as
    `spoken_syllable`s (the unvoiced ones dropped). Raises `VoiceError` naming the engine
    and voice when the program cannot run, writes no audio, or nothing is voiced."""
    bank = []
    with tempfile.TemporaryDirectory(prefix=f"tinysep-{engine}-") as tmp:
        for i, text in enumerate(texts):
            path = Path(tmp) / f"s{i:02d}.wav"
            args = command(text, path)
            try:
                done = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                                      check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise VoiceError(f"{engine} voice {voice}: could not run {args[0]} ({exc})") \
                    from exc
            if not path.is_file() or path.stat().st_size <= 44:
                raise VoiceError(f"{engine} voice {voice} wrote no audio for {text!r}: "
                                 f"{(done.stderr or done.stdout).strip()[-300:]}")
            syllable = spoken_syllable(read_mono(path, sample_rate).astype(np.float64),
                                       sample_rate, low_note, max_onset_seconds)
            if syllable is not None:
                bank.append(syllable)
    if not bank:
        raise VoiceError(f"{engine} voice {voice}: no voiced syllable")
    return tuple(bank)


def overlap_add(syllable: SpokenSyllable, out: np.ndarray, first: int, stop: int,
                f0_at: np.ndarray, gain_at: np.ndarray, sample_rate: int,
                warp: float = 1.0) -> None:
    """Lay the nucleus of ``syllable`` on ``out[first:stop]`` at pitch ``f0_at`` (Hz per
    sample of ``out``): one two-period Hann grain per output period, taken from the analysis
    mark at the same relative place in the nucleus (the vowel stretches over the note).
    Each grain is squeezed by ``warp`` (> 1: formants move up, a shorter vocal tract)."""
    marks = syllable.marks
    span = max(1, stop - first)
    length = marks[-1] - marks[0]
    position = first
    while position < stop:
        where = marks[0] + (position - first) / span * length
        j = int(np.argmin(np.abs(marks - where)))
        mark, period = int(marks[j]), int(syllable.periods[j])
        a, b = max(0, mark - period), min(len(syllable.audio), mark + period + 1)
        window = np.hanning(2 * period + 1)[a - (mark - period):b - (mark - period)]
        grain = warped(syllable.audio[a:b] * window, warp) * gain_at[position]
        o = position - int(round((mark - a) / warp))
        lo, hi = max(0, o), min(len(out), o + len(grain))
        if hi > lo:
            out[lo:hi] += grain[lo - o:hi - o]
        position += max(2, int(round(sample_rate / f0_at[position])))


def warped(x: np.ndarray, warp: float) -> np.ndarray:
    """``x`` resampled to ``1 / warp`` of its length (its spectrum scaled by ``warp``)."""
    if warp == 1.0:
        return x
    n = max(2, int(round(len(x) / warp)))
    return np.interp(np.linspace(0, len(x) - 1, n), np.arange(len(x)), x)


def render_singing(melody: list[SungNote], singer: VoiceSinger,
                   bank: tuple[SpokenSyllable, ...], n_samples: int, sample_rate: int,
                   rng: np.random.Generator) -> np.ndarray:
    """The sung vocal track of ``melody`` from the singer's syllable ``bank``: float32,
    ``n_samples`` long; ``singer.warp`` moves the formants (consonants and grains alike)."""
    hop = FRAME_MS / 1000.0
    n_frames = int(np.ceil(n_samples / sample_rate / hop)) + 1
    target = np.zeros(n_frames)
    gain = np.ones(n_frames)
    placed = []  # (syllable, first frame, stop frame)
    for group in syllable_groups(melody):
        syllable = bank[int(rng.integers(len(bank)))]
        first = int(round(group[0].start / hop))
        stop = min(n_frames, int(round((group[-1].start + group[-1].duration) / hop)))
        if stop - first < 2:
            continue
        note_frames(group, target, gain, hop, first, stop)
        placed.append((syllable, first, stop))
    if not placed:
        return np.zeros(n_samples, dtype=np.float32)
    frame_times = np.arange(n_frames) * hop
    sample_times = np.arange(n_samples) / sample_rate
    f0_at = np.interp(sample_times, frame_times, sung_pitch_hz(target, singer, hop, rng))
    gain_at = np.interp(sample_times, frame_times, gain)
    out = np.zeros(n_samples, dtype=np.float64)
    per_frame = sample_rate * hop
    for syllable, first, stop in placed:
        a, b = int(first * per_frame), min(n_samples, int(stop * per_frame))
        lead = warped(syllable.audio[:syllable.onset], singer.warp) * gain_at[a]
        start = max(0, a - len(lead))
        out[start:a] += lead[len(lead) - (a - start):]
        overlap_add(syllable, out, a, b, f0_at, gain_at, sample_rate, singer.warp)
    return out.astype(np.float32)
