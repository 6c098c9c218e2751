"""A second composer: through-composed songs in other meters, for a corpus whose music is not
all written by one hand.

`score.compose` writes 4/4 loops: one bar pattern per part, repeated on every bar, a melody on
an eighth-note grid. A separator trained only on those may learn the loops rather than the
voice. This composer writes what they lack, into the same `SongScore` so every engine plays
it: waltzes (3/4), compound 6/8 and swung 4/4 besides straight 4/4; chord progressions walked
by function, with secondary dominants (notes outside the key) and chords held over two bars;
accompaniment patterns redrawn from bar to bar; walking and pedal basses; a counter-melody
that is written afresh, or doubles the sung melody for a phrase; melodies with pickups,
leaps, repeated notes, triplets and long held notes, shaped in phrase arcs.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import numpy as np

from tinysep.data.score import (
    CONSONANTS,
    HARMONIC_INSTRUMENTS,
    VOWELS,
    Bar,
    Note,
    SongScore,
    SungNote,
    diatonic_chord,
    pitches_in_range,
    scale_of,
    voice_chord,
)

# meter: (beats per bar, tempo range of the beat in BPM, swung eighths)
METERS = {
    "4/4": (4, (60.0, 168.0), False),
    "3/4": (3, (80.0, 184.0), False),
    "6/8": (6, (150.0, 260.0), False),  # the beat is the eighth note
    "swing": (4, (90.0, 200.0), True),
}
METER_WEIGHTS = (0.3, 0.25, 0.2, 0.25)
SWING_RANGE = (0.6, 0.7)  # where a swung offbeat eighth falls, as a share of the beat
# The chords each scale degree tends to move to (functional harmony, 0-based degrees).
NEXT_DEGREES = {0: (3, 4, 5, 1, 2), 1: (4, 6, 4), 2: (5, 3), 3: (4, 0, 1, 4), 4: (0, 5, 0),
                5: (1, 3, 4), 6: (0, 0, 2)}
SECONDARY_DOMINANT = 0.15  # chance a chord is preceded by its own dominant (out of key)
HELD_CHORD = 0.15  # chance a chord holds over two bars
PATTERN_CHANGE = 0.5  # chance a part redraws its pattern at a bar (the loops never do)
SECTION_BARS_RANGE = (3, 8)  # bars per section: phrases of uneven length
DOUBLED_MELODY = 0.3  # chance the counter-melody doubles the voice in a section


def compose_through(rng: np.random.Generator, seconds: float,
                    vocal_range: tuple[int, int]) -> SongScore:
    """Draw a through-composed song: meter, key, tempo, a walked progression, parts redrawn
    from bar to bar and a sung melody in phrase arcs."""
    meter = list(METERS)[int(rng.choice(len(METERS), p=METER_WEIGHTS))]
    beats, (slow, fast), swung = METERS[meter]
    mode = "major" if rng.random() < 0.55 else "minor"
    key = int(rng.integers(12))
    tempo = float(rng.uniform(slow, fast))
    beat = 60.0 / tempo
    swing = float(rng.uniform(*SWING_RANGE)) if swung else 0.5
    scale = scale_of(key, mode)
    n_bars = int(np.ceil(seconds / (beats * beat))) + 1
    score = SongScore(key=key, mode=mode, tempo_bpm=tempo, beat_seconds=beat,
                      bars=_bars(rng, n_bars, beats * beat, scale), beats_per_bar=beats)

    roster = [str(n) for n in rng.choice(HARMONIC_INSTRUMENTS, size=int(rng.integers(1, 4)),
                                         replace=False)]
    n_sections = score.bars[-1].section_index + 1
    for name in roster:
        on = rng.random(n_sections) > 0.15
        on[int(rng.integers(n_sections))] = True
        score.parts[name] = _HARMONIC_MAKERS[name](rng, score, on, swing)
    score.parts["bass"] = _bass(rng, score, swing)
    if rng.random() < 0.75:
        score.drums = _drums(rng, score, meter, swing)
    score.melody = _melody(rng, score, scale, vocal_range, seconds, swing)
    if rng.random() < 0.65:
        score.parts["lead"] = _counter_melody(rng, score, scale, swing)
    return score


def _bars(rng: np.random.Generator, n_bars: int, bar_seconds: float,
          scale: tuple[int, ...]) -> list[Bar]:
    """Sections of uneven length over a progression walked chord by chord (no section
    repeats another's chords), a secondary dominant before some chords."""
    degree, bars, section, left = 0, [], 0, int(rng.integers(*SECTION_BARS_RANGE))
    sevenths = rng.random() < 0.4
    chords: list[tuple[int, ...]] = []
    while len(chords) < n_bars:
        following = int(rng.choice(NEXT_DEGREES[degree]))
        chord = diatonic_chord(scale, following, sevenths and rng.random() < 0.5)
        if rng.random() < SECONDARY_DOMINANT and following != 0:
            root = (chord[0] + 7) % 12
            chords.append((root, (root + 4) % 12, (root + 7) % 12, (root + 10) % 12))
        chords.append(chord)
        if rng.random() < HELD_CHORD:
            chords.append(chord)
        degree = following
    for i in range(n_bars):
        if left == 0:
            section, left = section + 1, int(rng.integers(*SECTION_BARS_RANGE))
        left -= 1
        bars.append(Bar(start=i * bar_seconds, chord=chords[i], section=f"S{section}",
                        section_index=section, fill=left == 0 and rng.random() < 0.5))
    return bars


def _time(score: SongScore, bar: Bar, position: float, swing: float) -> float:
    """Seconds of a position in beats within a bar, offbeat eighths swung."""
    whole, part = divmod(position, 1.0)
    if abs(part - 0.5) < 1e-9:
        part = swing
    return bar.start + (whole + part) * score.beat_seconds


def _velocity(rng: np.random.Generator, level: float) -> float:
    return float(np.clip(level * rng.uniform(0.7, 1.0), 0.05, 1.0))


def _piano(rng: np.random.Generator, score: SongScore, on: np.ndarray,
           swing: float) -> list[Note]:
    """Patterns on the eighth-note grid, redrawn at some bars: arpeggios up or down, a bass
    note and chord stabs (oom-pah), block chords on random eighths; pedalled or not."""
    beats, notes, pattern = score.beats_per_bar, [], None
    center = rng.uniform(57, 70)
    for bar in score.bars:
        if pattern is None or rng.random() < PATTERN_CHANGE:
            kind = str(rng.choice(["up", "down", "oompah", "block"]))
            pedal = rng.random() < 0.4
            grid = np.arange(0.0, beats, 0.5)
            hits = sorted(rng.choice(grid, size=int(rng.integers(2, len(grid) + 1)),
                                     replace=False))
            pattern = (kind, pedal, [0.0, *(h for h in hits if h > 0)])
        if not on[bar.section_index]:
            continue
        kind, pedal, hits = pattern
        voicing = voice_chord(bar.chord, center)
        for k, pos in enumerate(hits):
            if kind == "up":
                chosen = [voicing[k % len(voicing)]]
            elif kind == "down":
                chosen = [voicing[-1 - k % len(voicing)]]
            elif kind == "oompah":
                chosen = [voicing[0] - 12] if pos == 0 else voicing[1:]
            else:
                chosen = voicing
            end = beats if pedal else (hits[k + 1] if k + 1 < len(hits) else beats)
            for p in chosen:
                notes.append(Note(_time(score, bar, pos, swing),
                                  max(end - pos, 0.25) * score.beat_seconds, p,
                                  _velocity(rng, 0.85)))
    return notes


def _held(rng: np.random.Generator, score: SongScore, on: np.ndarray, swing: float,
          low: float, high: float, level: float) -> list[Note]:
    """Chords held through the bar (or re-struck on each beat), each voiced nearest the last
    one so the inner voices move by steps."""
    notes, previous = [], None
    center = rng.uniform(low, high)
    restrike = rng.random() < 0.3
    for bar in score.bars:
        if not on[bar.section_index]:
            continue
        voicing = voice_chord(bar.chord, center if previous is None else float(np.mean(previous)))
        previous = voicing
        strikes = range(score.beats_per_bar) if restrike else (0,)
        length = 1.0 if restrike else score.beats_per_bar
        for pos in strikes:
            for p in voicing:
                notes.append(Note(_time(score, bar, float(pos), swing), 0.95 * length *
                                  score.beat_seconds, p, _velocity(rng, level)))
    return notes


# pads and organs hold chords alike, in their own registers and levels
_HARMONIC_MAKERS = {"pad": partial(_held, low=55.0, high=67.0, level=0.75), "piano": _piano,
                    "organ": partial(_held, low=56.0, high=66.0, level=0.7)}


def _bass(rng: np.random.Generator, score: SongScore, swing: float) -> list[Note]:
    """Per section: a walking line (a note per beat, stepping toward the next root), the
    root held (a pedal), or root and fifth on the beats of the meter."""
    beats, notes = score.beats_per_bar, []
    low = int(rng.integers(31, 40))
    styles = {}
    for i, bar in enumerate(score.bars):
        style = styles.setdefault(bar.section_index,
                                  str(rng.choice(["walking", "pedal", "root-fifth"])))
        root = low + (bar.chord[0] - low) % 12
        if style == "pedal":
            notes.append(Note(bar.start, 0.95 * score.bar_seconds, root, _velocity(rng, 0.9)))
            continue
        following = score.bars[min(i + 1, len(score.bars) - 1)].chord[0]
        target = low + (following - low) % 12
        for b in range(beats):
            if style == "walking":
                pitch = root + round((target - root) * b / beats) + (0 if b == 0 else
                                                                     int(rng.choice([0, 2, -1])))
            else:
                pitch = root + (7 if b % 2 else 0)
            notes.append(Note(_time(score, bar, float(b), swing), 0.9 * score.beat_seconds,
                              pitch, _velocity(rng, 0.9)))
    return notes


def _drums(rng: np.random.Generator, score: SongScore, meter: str,
           swing: float) -> dict[str, list[tuple[float, float]]]:
    """Hits in the meter's feel (a waltz's kick on one, 6/8's backbeat on four, a swung ride
    as the hat), kicks redrawn per section, fills at some section ends."""
    beats = score.beats_per_bar
    snare = {"4/4": (1.0, 3.0), "3/4": (1.0, 2.0), "6/8": (3.0,), "swing": (1.0, 3.0)}[meter]
    if meter == "swing":
        hat = (0.0, 1.0, 1.5, 2.0, 3.0, 3.5)
    elif meter == "6/8":
        hat = tuple(float(b) for b in range(6))
    else:
        hat = tuple(np.arange(0.0, beats, 0.5 if rng.random() < 0.6 else 1.0))
    hits: dict[str, list[tuple[float, float]]] = {"kick": [], "snare": [], "hat": []}
    kicks: dict[int, list[float]] = {}
    for bar in score.bars:
        kick = kicks.setdefault(bar.section_index, [0.0, *sorted(
            rng.choice(np.arange(0.5, beats, 0.5), size=int(rng.integers(0, 3)), replace=False))])
        parts = {"kick": kick, "snare": snare, "hat": hat}
        for drum, positions in parts.items():
            for pos in positions:
                if bar.fill and pos >= beats / 2 and drum != "kick":
                    continue
                accent = 0.95 if drum != "hat" or float(pos).is_integer() else 0.6
                hits[drum].append((_time(score, bar, float(pos), swing), _velocity(rng, accent)))
        if bar.fill:
            for pos in np.arange(beats / 2, beats, 0.25 if rng.random() < 0.5 else 0.5):
                hits["snare"].append((_time(score, bar, float(pos), swing),
                                      _velocity(rng, 0.5 + pos / (2 * beats))))
    return hits


def _bar_at(score: SongScore, beat_position: float) -> Bar:
    """The bar a position in beats from the song's start falls in (a triplet's rounding
    error does not move it back a bar)."""
    index = int(np.floor(beat_position / score.beats_per_bar + 1e-6))
    return score.bars[min(index, len(score.bars) - 1)]


def _durations(rng: np.random.Generator, swung: bool) -> float:
    """One note's length in beats: eighths to whole bars, dotted values, and (in a swung
    song) triplets."""
    values = [0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 0.75]
    weights = [0.3, 0.3, 0.1, 0.12, 0.06, 0.04, 0.08]
    if swung:
        values.append(1.0 / 3.0)
        weights = [w * 0.85 for w in weights] + [0.15]
    return float(rng.choice(values, p=np.asarray(weights) / np.sum(weights)))


def _melody(rng: np.random.Generator, score: SongScore, scale: tuple[int, ...],
            vocal_range: tuple[int, int], seconds: float, swing: float) -> list[SungNote]:
    """Phrases of uneven length, often with a pickup before the bar, rising to a peak and
    falling back; steps, repeated notes and leaps (a leap turns back); chord tones on the
    downbeats; a held note ends each phrase."""
    low, high = vocal_range
    ladder = pitches_in_range(scale, low, high)
    beats, beat = score.beats_per_bar, score.beat_seconds
    total = seconds / beat
    swung = swing != 0.5
    position = float(rng.choice([0.0, 0.5, 1.0, 2.0]))
    index = int(rng.integers(len(ladder) // 4, 3 * len(ladder) // 4 + 1))
    notes: list[SungNote] = []
    while position < total:
        length = float(rng.integers(2, 5) * beats)
        if rng.random() < 0.5:  # a pickup: start an eighth or a beat before the bar line
            position = max(position, np.ceil(position / beats) * beats - float(
                rng.choice([0.5, 1.0])))
        end, start = position + length, position
        peak = start + length * rng.uniform(0.3, 0.8)
        vowel, step = int(rng.integers(len(VOWELS))), 0
        loudness = rng.uniform(0.6, 0.85)
        while position < end - 0.25:
            duration = min(_durations(rng, swung), end - position)
            last = position + duration >= end - 0.25
            if last:
                duration = max(duration, float(rng.choice([1.5, 2.0, 3.0])))
            if step != 0 and abs(step) >= 3:
                step = -int(np.sign(step)) * int(rng.integers(1, 3))  # turn back after a leap
            elif rng.random() < 0.2:
                step = 0  # a repeated note
            elif rng.random() < 0.15:
                step = int(rng.choice([-5, -4, -3, 3, 4, 5, 7]))
            else:
                step = int(rng.choice([1, 2])) * (1 if position < peak else -1)
            index = int(np.clip(index + step, 0, len(ladder) - 1))
            bar = _bar_at(score, position)
            downbeat = abs(position - round(position / beats) * beats) < 1e-6
            if downbeat or last:
                tones = np.flatnonzero(np.isin(ladder % 12, bar.chord))
                if len(tones):
                    index = int(tones[np.argmin(np.abs(tones - index))])
            melisma = position > start and rng.random() < 0.1
            if not melisma:
                vowel = int(rng.integers(len(VOWELS)))
            consonant = (CONSONANTS[int(rng.integers(len(CONSONANTS)))]
                         if not melisma and rng.random() < 0.7 else None)
            swell = 1.0 + 0.25 * (1.0 - abs(position - peak) / max(length, 1.0))
            notes.append(SungNote(
                start=_time(score, bar, position - bar.start / beat, swing),
                duration=duration * beat, pitch=float(ladder[index]),
                velocity=float(np.clip(loudness * swell * rng.uniform(0.9, 1.05), 0.3, 1.0)),
                vowel=vowel, syllable_start=not melisma, consonant=consonant,
                nasal_onset=not melisma and consonant is None and rng.random() < 0.4))
            position += duration
        position += float(rng.choice([0.5, 1.0, 1.5, 2.0, 3.0, 4.0]))
    # a swung offbeat starts late: the note before it ends where it begins (one voice)
    for k in range(len(notes) - 1):
        gap = notes[k + 1].start - notes[k].start
        if notes[k].duration > gap:
            notes[k] = replace(notes[k], duration=gap)
    return [n for n in notes if n.start < seconds]


def _counter_melody(rng: np.random.Generator, score: SongScore, scale: tuple[int, ...],
                    swing: float) -> list[Note]:
    """An instrument's own line in the voice's register, written afresh in each section; in
    some sections it doubles the sung melody an octave away or in unison instead."""
    ladder = pitches_in_range(scale, 60, 84)
    beats, beat = score.beats_per_bar, score.beat_seconds
    notes: list[Note] = []
    index = len(ladder) // 2
    for section in sorted({b.section_index for b in score.bars}):
        bars = [b for b in score.bars if b.section_index == section]
        first, stop = bars[0].start, bars[-1].start + score.bar_seconds
        if rng.random() < 0.2:
            continue
        if rng.random() < DOUBLED_MELODY:
            shift = int(rng.choice([-12, 0, 12]))
            notes += [Note(n.start, n.duration, n.pitch + shift, _velocity(rng, 0.75))
                      for n in score.melody if first <= n.start < stop]
            continue
        position = 0.0
        while first + position * beat < stop:
            duration = float(rng.choice([0.5, 1.0, 1.5, 2.0], p=[0.35, 0.35, 0.15, 0.15]))
            if rng.random() < 0.2:
                position += duration  # a rest
                continue
            index = int(np.clip(index + rng.choice([-2, -1, 1, 2, 0, 3, -3]), 0,
                                len(ladder) - 1))
            bar = bars[min(int(position // beats), len(bars) - 1)]
            notes.append(Note(_time(score, bar, position - (bar.start - first) / beat, swing),
                              0.9 * duration * beat, float(ladder[index]),
                              _velocity(rng, 0.75)))
            position += duration
    return notes
