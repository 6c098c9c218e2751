"""Formant-synthesized singing: eSpeak NG's voices re-pitched by pitch-synchronous overlap-add.

eSpeak NG speaks a bank of syllables per voice with its own formant synthesizers (its
default one and the Klatt ones), a world apart from Festival's recorded diphones. No
vocoder resynthesizes them: the voiced nucleus of each syllable is cut into two-period
grains centred on its pitch marks, and the grains are laid again at the sung pitch
(TD-PSOLA), so formants stay put while the pitch follows the melody, with the same
portamento and vibrato as the Festival singers (`singing.sung_pitch_hz`).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from tinysep.data.audio_io import read_mono
from tinysep.data.score import SungNote
from tinysep.data.singing import (
    FRAME_MS,
    OPEN_SYLLABLES,
    WORD_SYLLABLES,
    VoiceError,
    VoiceSinger,
    note_frames,
    sung_pitch_hz,
    syllable_groups,
)

PACKAGE = "espeak-ng"
ESPEAK_TIMEOUT = 60.0
SPEED_WPM = 100  # slow speech: longer vowels to stretch over the notes


@dataclass(frozen=True)
class EspeakVoice:
    """One eSpeak NG voice: language, voice variant, natural range, what it speaks."""

    language: str
    variant: str
    low: int  # lowest MIDI note of its natural range
    syllables: tuple[str, ...]

    @property
    def spec(self) -> str:
        """The ``-v`` argument of espeak-ng."""
        return f"{self.language}+{self.variant}"


ESPEAK_VOICES: dict[str, EspeakVoice] = {
    "en-m1": EspeakVoice("en", "m1", 45, WORD_SYLLABLES),
    "en-m3": EspeakVoice("en", "m3", 45, WORD_SYLLABLES),
    "en-f1": EspeakVoice("en", "f1", 55, WORD_SYLLABLES),
    "en-f3": EspeakVoice("en", "f3", 55, WORD_SYLLABLES),
    "it-m2": EspeakVoice("it", "m2", 45, OPEN_SYLLABLES),
    "es-f2": EspeakVoice("es", "f2", 55, OPEN_SYLLABLES),
    "de-klatt": EspeakVoice("de", "klatt", 45, OPEN_SYLLABLES),
    "en-klatt3": EspeakVoice("en", "klatt3", 45, WORD_SYLLABLES),
    "pt-f4": EspeakVoice("pt", "f4", 55, OPEN_SYLLABLES),
    "fr-m7": EspeakVoice("fr", "m7", 45, OPEN_SYLLABLES),
    "pl-f5": EspeakVoice("pl", "f5", 55, OPEN_SYLLABLES),
    "en-klatt4": EspeakVoice("en", "klatt4", 45, WORD_SYLLABLES),
}
# The voices the espeak engine sings with unless a corpus names some.
DEFAULT_ESPEAK_VOICES = ("de-klatt", "en-f1", "en-f3", "en-klatt3", "en-m1", "en-m3",
                         "es-f2", "it-m2")
ESPEAK_LOWS = {name: voice.low for name, voice in ESPEAK_VOICES.items()}


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


def missing_tools(voices: tuple[str, ...]) -> str | None:
    """What the espeak engine lacks to sing with ``voices``, or None when it can run."""
    if shutil.which("espeak-ng") is None:
        return f"the espeak-ng program (Debian package {PACKAGE})"
    unknown = [v for v in voices if v not in ESPEAK_VOICES]
    if unknown:
        return f"the eSpeak NG voice(s) {', '.join(unknown)}"
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


@lru_cache(maxsize=16)
def syllable_bank(voice: str, sample_rate: int) -> tuple[SpokenSyllable, ...]:
    """eSpeak NG speaks each of the voice's syllables once per process; their voiced nuclei
    get pitch marks."""
    import pyworld

    spec = ESPEAK_VOICES[voice]
    # an octave below the voice's lowest note: no subharmonic can pass for its pitch
    floor = 440.0 * 2 ** ((spec.low - 12 - 69) / 12)
    bank = []
    with tempfile.TemporaryDirectory(prefix="tinysep-espeak-") as tmp:
        for i, text in enumerate(spec.syllables):
            path = Path(tmp) / f"s{i:02d}.wav"
            try:
                done = subprocess.run(["espeak-ng", "-v", spec.spec, "-s", str(SPEED_WPM), "-z",
                                       "-w", str(path), text], capture_output=True, text=True,
                                      timeout=ESPEAK_TIMEOUT, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise VoiceError(f"espeak voice {voice}: could not run espeak-ng ({exc})") \
                    from exc
            if not path.is_file() or path.stat().st_size <= 44:
                raise VoiceError(f"espeak voice {voice} wrote no audio for {text!r}: "
                                 f"{done.stderr.strip()[-300:]}")
            x = read_mono(path, sample_rate).astype(np.float64)
            loud = np.flatnonzero(np.abs(x) > 0.02 * np.max(np.abs(x), initial=0.0))
            if loud.size == 0:
                continue
            x = x[loud[0]:loud[-1] + 1]
            f0, t = pyworld.dio(x, sample_rate, frame_period=FRAME_MS, f0_floor=floor,
                                f0_ceil=floor * 4)
            f0 = pyworld.stonemask(x, f0, t, sample_rate)
            marks, periods = pitch_marks(x, f0, sample_rate)
            if marks.size < 4:
                continue
            bank.append(SpokenSyllable(x / np.max(np.abs(x)), marks, periods))
    if not bank:
        raise VoiceError(f"espeak voice {voice}: no voiced syllable")
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


def render_singing(melody: list[SungNote], singer: VoiceSinger, n_samples: int,
                   sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """The sung vocal track of ``melody`` by an eSpeak NG singer: float32, ``n_samples``
    long; ``singer.warp`` moves the formants (consonants and grains alike)."""
    bank = syllable_bank(singer.voice, sample_rate)
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
