"""The score of one synthetic song: key, tempo, a form of 4-bar sections, the parts and a melody.

Only musical decisions live here (what plays when, at which pitch); `instruments` and
`voice` turn the score into sound. The accompaniment is built from per-song bar patterns
that repeat on every bar or every 4-bar progression cycle, with variations (instruments
dropping out, drum fills, small velocity changes), as real songs do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)
NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")

# Chord progressions as 0-based scale degrees, one chord per bar.
MAJOR_PROGRESSIONS = (
    (0, 4, 5, 3), (5, 3, 0, 4), (0, 5, 3, 4), (0, 3, 4, 3),
    (0, 3, 5, 4), (3, 0, 4, 5), (0, 2, 3, 4), (1, 4, 0, 5),
)
MINOR_PROGRESSIONS = (
    (0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 5, 3, 4), (0, 3, 6, 2), (5, 6, 0, 0),
)

HARMONIC_INSTRUMENTS = ("pad", "piano", "organ")
VOWELS = ("a", "e", "i", "o", "u")
CONSONANTS = ("s", "sh", "f", "h", "t", "k", "p")

# This module's composer, as corpora name it; a corpus that names none was written by it.
FIRST_COMPOSER = "loops"
BAR_STEPS = 16  # sixteenth notes per 4/4 bar
SECTION_BARS = 4  # one pass of the progression


@dataclass(frozen=True)
class Note:
    """One pitched note: onset and length in seconds, MIDI pitch, velocity in (0, 1]."""

    start: float
    duration: float
    pitch: float
    velocity: float


@dataclass(frozen=True)
class SungNote:
    """One sung note; ``syllable_start`` is False for the later notes of a melisma."""

    start: float
    duration: float
    pitch: float
    velocity: float
    vowel: int
    syllable_start: bool
    consonant: str | None
    nasal_onset: bool


@dataclass(frozen=True)
class Bar:
    """One bar of the form: its chord (pitch classes, root first) and its section."""

    start: float
    chord: tuple[int, ...]
    section: str
    section_index: int
    fill: bool


@dataclass
class SongScore:
    """Everything the renderers need to play one song."""

    key: int
    mode: str
    tempo_bpm: float
    beat_seconds: float
    bars: list[Bar]
    parts: dict[str, list[Note]] = field(default_factory=dict)
    drums: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    melody: list[SungNote] = field(default_factory=list)
    beats_per_bar: int = 4

    @property
    def key_name(self) -> str:
        return f"{NOTE_NAMES[self.key]} {self.mode}"

    @property
    def bar_seconds(self) -> float:
        return self.beats_per_bar * self.beat_seconds


def scale_of(key: int, mode: str) -> tuple[int, ...]:
    """Pitch classes of the key's scale."""
    steps = MAJOR_SCALE if mode == "major" else MINOR_SCALE
    return tuple((key + s) % 12 for s in steps)


def diatonic_chord(scale: tuple[int, ...], degree: int, seventh: bool) -> tuple[int, ...]:
    """Triad (or seventh chord) on a scale degree, root first."""
    offsets = (0, 2, 4, 6) if seventh else (0, 2, 4)
    return tuple(scale[(degree + o) % 7] for o in offsets)


def voice_chord(chord: tuple[int, ...], center: float) -> list[int]:
    """MIDI pitches for a chord: each pitch class at the octave nearest to ``center``."""
    pitches = []
    for pc in chord:
        base = pc + 12 * np.floor((center - pc) / 12.0)
        pitches.append(int(base if center - base <= 6 else base + 12))
    return sorted(set(pitches))


def pitches_in_range(pitch_classes: tuple[int, ...], low: int, high: int) -> np.ndarray:
    """All MIDI pitches in ``[low, high]`` whose pitch class is in ``pitch_classes``."""
    allowed = set(pitch_classes)
    return np.array([p for p in range(low, high + 1) if p % 12 in allowed])


def compose(rng: np.random.Generator, seconds: float, vocal_range: tuple[int, int]) -> SongScore:
    """Draw a song: key, tempo, form, accompaniment parts and a sung melody."""
    mode = "major" if rng.random() < 0.6 else "minor"
    key = int(rng.integers(12))
    tempo = float(rng.uniform(72.0, 140.0))
    beat = 60.0 / tempo
    scale = scale_of(key, mode)

    progressions = MAJOR_PROGRESSIONS if mode == "major" else MINOR_PROGRESSIONS
    picks = rng.choice(len(progressions), size=2, replace=False)
    sevenths = rng.random() < 0.35
    section_chords = {
        label: [diatonic_chord(scale, d, sevenths and rng.random() < 0.5)
                for d in progressions[int(p)]]
        for label, p in zip("AB", picks, strict=True)
    }

    n_bars = int(np.ceil(seconds / (4 * beat))) + 1
    bars = _form(rng, n_bars, beat, section_chords)
    score = SongScore(key=key, mode=mode, tempo_bpm=tempo, beat_seconds=beat, bars=bars)

    roster = [str(name) for name in
              rng.choice(HARMONIC_INSTRUMENTS, size=int(rng.integers(2, 4)), replace=False)]
    if rng.random() < 0.7:
        roster.append("lead")
    playing = _arrangement(rng, bars, roster)
    for name in roster:
        maker = _PART_MAKERS[name]
        score.parts[name] = maker(rng, score, playing[name])
    score.parts["bass"] = _bass_part(rng, score)
    if rng.random() < 0.9:
        score.drums = _drum_part(rng, score)
    score.melody = _melody(rng, score, scale, vocal_range, seconds)
    return score


def _form(rng: np.random.Generator, n_bars: int, beat: float,
          section_chords: dict[str, list[tuple[int, ...]]]) -> list[Bar]:
    """Sections of 4 bars, verse (A) and chorus (B), with drum fills before a change."""
    n_sections = -(-n_bars // SECTION_BARS)
    labels = ["A"]
    for _ in range(n_sections - 1):
        stay = 0.4 if labels[-1] == "A" else 0.5
        labels.append(labels[-1] if rng.random() < stay else ("B" if labels[-1] == "A" else "A"))
    labels.append("end")
    bars = []
    for i in range(n_bars):
        s = i // SECTION_BARS
        last_of_section = i % SECTION_BARS == SECTION_BARS - 1
        fill = last_of_section and labels[s + 1] != labels[s] and rng.random() < 0.7
        bars.append(Bar(start=i * 4 * beat, chord=section_chords[labels[s]][i % SECTION_BARS],
                        section=labels[s], section_index=s, fill=fill))
    return bars


def _arrangement(rng: np.random.Generator, bars: list[Bar], roster: list[str]) -> dict:
    """Which instrument plays in which section: verses thinner, occasional drop-outs."""
    n_sections = bars[-1].section_index + 1
    section_of = {b.section_index: b.section for b in bars}
    thin = {name: rng.random() < 0.4 for name in roster}  # sits out of verses
    playing = {}
    for name in roster:
        on = np.ones(n_sections, dtype=bool)
        for s in range(n_sections):
            if section_of[s] == "A" and (thin[name] or (name == "lead" and rng.random() < 0.5)):
                on[s] = False
            elif rng.random() < 0.12:
                on[s] = False
        playing[name] = on
    harmonic = [n for n in roster if n != "lead"]
    for s in range(n_sections):  # never leave a section without chords
        if not any(playing[n][s] for n in harmonic):
            playing[harmonic[int(rng.integers(len(harmonic)))]][s] = True
    return playing


def _jitter(rng: np.random.Generator, velocity: float) -> float:
    return float(np.clip(velocity * rng.uniform(0.88, 1.0), 0.05, 1.0))


def _pad_part(rng: np.random.Generator, score: SongScore, on: np.ndarray) -> list[Note]:
    center = rng.uniform(58, 66)
    notes = []
    for bar in score.bars:
        if on[bar.section_index]:
            for p in voice_chord(bar.chord, center):
                notes.append(Note(bar.start, score.bar_seconds, p, _jitter(rng, 0.8)))
    return notes


def _piano_part(rng: np.random.Generator, score: SongScore, on: np.ndarray) -> list[Note]:
    center = rng.uniform(60, 69)
    step = score.beat_seconds / 4
    style = str(rng.choice(["arpeggio", "block", "broken"]))
    if style == "arpeggio":
        every = int(rng.choice([2, 2, 1]))
        order = rng.permutation(4) if rng.random() < 0.5 else np.array([0, 1, 2, 3])
        hits = [(s, [int(order[(s // every) % 4])], every) for s in range(0, BAR_STEPS, every)]
    elif style == "block":
        steps = sorted(rng.choice(BAR_STEPS // 2, size=int(rng.integers(3, 6)), replace=False) * 2)
        if 0 not in steps:
            steps = [0, *steps]
        hits = [(int(s), None, 2) for s in steps]
    else:
        hits = [(0, [0], 4), (4, [1, 2, 3], 2), (8, [0], 4), (12, [1, 2, 3], 2)]
    notes = []
    for bar in score.bars:
        if not on[bar.section_index]:
            continue
        voicing = voice_chord(bar.chord, center)
        for s, which, length in hits:
            chosen = voicing if which is None else [voicing[w % len(voicing)] for w in which]
            for p in chosen:
                notes.append(Note(bar.start + s * step, length * step * 1.8, p, _jitter(rng, 0.9)))
    return notes


def _organ_part(rng: np.random.Generator, score: SongScore, on: np.ndarray) -> list[Note]:
    center = rng.uniform(57, 65)
    step = score.beat_seconds / 4
    stabs = rng.random() < 0.5
    notes = []
    for bar in score.bars:
        if not on[bar.section_index]:
            continue
        for p in voice_chord(bar.chord, center):
            if stabs:
                for s in (2, 6, 10, 14):
                    notes.append(Note(bar.start + s * step, 1.5 * step, p, _jitter(rng, 0.75)))
            else:
                for half in (0, 8):
                    notes.append(Note(bar.start + half * step, 8 * step, p, _jitter(rng, 0.7)))
    return notes


def _lead_part(rng: np.random.Generator, score: SongScore, on: np.ndarray) -> list[Note]:
    """A 2-bar riff in the vocal range, replayed on every chord pair (it follows the chord)."""
    center = rng.uniform(64, 72)
    step = score.beat_seconds / 4
    onsets = sorted(rng.choice(np.arange(0, 2 * BAR_STEPS, 2), size=int(rng.integers(4, 9)),
                               replace=False))
    degrees = rng.integers(0, 4, size=len(onsets))
    notes = []
    for i in range(0, len(score.bars), 2):
        first = score.bars[i]
        if not on[first.section_index]:
            continue
        for k, s in enumerate(onsets):
            bar = score.bars[min(i + s // BAR_STEPS, len(score.bars) - 1)]
            voicing = voice_chord(bar.chord, center)
            following = onsets[k + 1] if k + 1 < len(onsets) else 2 * BAR_STEPS
            length = min(following - s, 6) * step
            notes.append(Note(first.start + s * step, length, voicing[degrees[k] % len(voicing)],
                              _jitter(rng, 0.8)))
    return notes


_PART_MAKERS = {"pad": _pad_part, "piano": _piano_part, "organ": _organ_part, "lead": _lead_part}

_BASS_PATTERNS = (
    ((0, 0, 6), (8, 0, 6)),
    ((0, 0, 2), (2, 0, 2), (4, 0, 2), (6, 0, 2), (8, 0, 2), (10, 0, 2), (12, 0, 2), (14, 0, 2)),
    ((0, 0, 3), (3, 0, 3), (6, 7, 2), (8, 0, 3), (11, 0, 3), (14, 7, 2)),
    ((0, 0, 4), (4, 7, 4), (8, 12, 4), (12, 7, 4)),
    ((0, 0, 10), (10, 0, 2), (12, 7, 4)),
)


def _bass_part(rng: np.random.Generator, score: SongScore) -> list[Note]:
    """Root-based bass line (root, fifth, octave) from one bar pattern per song."""
    pattern = _BASS_PATTERNS[int(rng.integers(len(_BASS_PATTERNS)))]
    low = int(rng.integers(33, 40))
    step = score.beat_seconds / 4
    notes = []
    for bar in score.bars:
        root = low + (bar.chord[0] - low) % 12
        for s, interval, length in pattern:
            notes.append(Note(bar.start + s * step, length * step, root + interval,
                              _jitter(rng, 0.9)))
    return notes


_DRUM_STYLES = {
    "rock": {"kick": (0, 8), "snare": (4, 12), "hat": tuple(range(0, 16, 2))},
    "pop": {"kick": (0, 6, 8), "snare": (4, 12), "hat": tuple(range(16))},
    "halftime": {"kick": (0, 10), "snare": (8,), "hat": tuple(range(0, 16, 2))},
    "ballad": {"kick": (0, 8), "snare": (12,), "hat": (0, 4, 8, 12)},
    "four": {"kick": (0, 4, 8, 12), "snare": (4, 12), "hat": (2, 6, 10, 14)},
}


def _drum_part(rng: np.random.Generator, score: SongScore) -> dict[str, list[tuple[float, float]]]:
    """Hits (time, velocity) per drum: one bar pattern per song, fills before section changes."""
    names = sorted(_DRUM_STYLES)
    style = _DRUM_STYLES[names[int(rng.integers(len(names)))]]
    step = score.beat_seconds / 4
    hits: dict[str, list[tuple[float, float]]] = {"kick": [], "snare": [], "hat": []}
    for bar in score.bars:
        for drum, steps in style.items():
            for s in steps:
                if bar.fill and s >= 8 and drum != "kick":
                    continue
                accent = 1.0 if drum != "hat" or s % 4 == 0 else 0.7
                hits[drum].append((bar.start + s * step, _jitter(rng, accent)))
        if bar.fill:
            for s in range(8, 16, 1 if rng.random() < 0.5 else 2):
                hits["snare"].append((bar.start + s * step, _jitter(rng, 0.5 + s / 32)))
    return hits


def _melody(rng: np.random.Generator, score: SongScore, scale: tuple[int, ...],
            vocal_range: tuple[int, int], seconds: float) -> list[SungNote]:
    """Phrases of 1-2 bars separated by short rests; strong beats land on chord tones."""
    low, high = vocal_range
    ladder = pitches_in_range(scale, low, high)
    beat = score.beat_seconds
    max_rest_beats = max(1.0, np.floor(1.6 / beat * 2) / 2)
    position = float(rng.choice([0.0, 0.5, 1.0]))
    total_beats = seconds / beat
    index = int(np.argmin(np.abs(ladder - (low + high) / 2)))
    notes: list[SungNote] = []
    while position < total_beats:
        phrase_end = position + float(rng.choice([4.0, 6.0, 8.0]))
        vowel = int(rng.integers(len(VOWELS)))
        first = True
        while position < phrase_end - 0.25:
            duration = float(rng.choice([0.5, 1.0, 1.5, 2.0], p=[0.45, 0.35, 0.1, 0.1]))
            duration = min(duration, phrase_end - position)
            last = position + duration >= phrase_end - 0.25
            if last:
                duration = max(duration, 1.5)
            index = int(np.clip(index + rng.choice([-2, -1, -1, 0, 1, 1, 2, 3, -3]), 0,
                                len(ladder) - 1))
            strong = abs(position - round(position)) < 1e-9 and int(round(position)) % 2 == 0
            if strong or last:
                bar = score.bars[min(int(position // 4), len(score.bars) - 1)]
                tones = np.flatnonzero(np.isin(ladder % 12, bar.chord))
                if len(tones):
                    index = int(tones[np.argmin(np.abs(tones - index))])
            melisma = not first and rng.random() < 0.12
            if not melisma:
                vowel = int(rng.integers(len(VOWELS)))
            consonant = None
            if not melisma and rng.random() < 0.7:
                consonant = CONSONANTS[int(rng.integers(len(CONSONANTS)))]
            notes.append(SungNote(
                start=position * beat, duration=duration * beat, pitch=float(ladder[index]),
                velocity=float(rng.uniform(0.75, 1.0)), vowel=vowel,
                syllable_start=not melisma, consonant=consonant,
                nasal_onset=not melisma and consonant is None and rng.random() < 0.4,
            ))
            position += duration
            first = False
        position += float(rng.choice(np.arange(1.0, max_rest_beats + 0.5, 0.5)))
    return [n for n in notes if n.start < seconds]
