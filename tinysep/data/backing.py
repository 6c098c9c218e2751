"""Backing vocals: a harmony line beside the melody, or sustained "oohs" on the chords.

Both are sung by other singers of the lead's own engine and belong to the vocals stem, as
backing vocals do in a mix. They teach a separator that voices can be several at once and
can hold long vowels like a pad, without borrowing any held-out engine's sound.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from tinysep.data.score import VOWELS, SongScore, SungNote, scale_of, voice_chord

HARMONY_STEPS = (2, -2, 5, -5)  # scale degrees: a third up or down, a sixth up or down
HARMONY_WEIGHTS = (0.4, 0.3, 0.15, 0.15)
HARMONY_LEVEL_DB = (-10.0, -4.0)  # backing relative to the lead, RMS over sung frames
OOH_LEVEL_DB = (-12.0, -5.0)
OOH_VOICES = (1, 3)  # sustained chord-tone voices, at least and at most
OOH_VOWELS = (VOWELS.index("a"), VOWELS.index("o"), VOWELS.index("u"))


def harmony_line(melody: list[SungNote], score: SongScore, steps: int) -> list[SungNote]:
    """The melody moved ``steps`` scale degrees (2 = a third up, -2 a third down, 5 a sixth
    up), each note kept in the key."""
    scale = scale_of(score.key, score.mode)
    out = []
    for note in melody:
        pitch = int(round(note.pitch))
        pc = pitch % 12
        if pc in scale:
            target = scale[(scale.index(pc) + steps) % 7]
            # the nearest pitch of that class on the interval's side (a third or a sixth
            # stays within the octave)
            gap = (target - pc) % 12 if steps > 0 else -((pc - target) % 12)
            moved = pitch + gap
        else:
            moved = pitch + (4 if steps > 0 else -3)
        out.append(replace(note, pitch=float(moved)))
    return out


def ooh_lines(score: SongScore, vocal_range: tuple[int, int], voices: int, seconds: float,
              rng: np.random.Generator) -> list[list[SungNote]]:
    """``voices`` lines holding one chord tone per bar on one open vowel, in the sections
    the draw picks (at least one), each line on a different tone where the chord allows."""
    low, high = vocal_range
    center = (low + high) / 2.0
    sections = sorted({bar.section_index for bar in score.bars if bar.start < seconds})
    chosen = {s for s in sections if rng.random() < 0.6} or {int(rng.choice(sections))}
    vowel = int(rng.choice(OOH_VOWELS))
    lines: list[list[SungNote]] = [[] for _ in range(voices)]
    for bar in score.bars:
        if bar.section_index not in chosen:
            continue
        tones = voice_chord(bar.chord[:3], center)
        for v, line in enumerate(lines):
            line.append(SungNote(
                start=bar.start, duration=0.96 * score.bar_seconds,
                pitch=float(tones[v % len(tones)]), velocity=float(rng.uniform(0.6, 0.85)),
                vowel=vowel, syllable_start=True, consonant=None,
                nasal_onset=bool(rng.random() < 0.2)))
    return lines


def sung_rms(x: np.ndarray) -> float:
    """RMS over the samples that sound (above -60 dB of the peak): the level of a part or
    a voice, whatever its rests."""
    loud = np.abs(x) > 1e-3 * (np.max(np.abs(x)) + 1e-12)
    return float(np.sqrt(np.mean(x[loud].astype(np.float64) ** 2))) if loud.any() else 0.0


def mix_backing(lead: np.ndarray, parts: list[np.ndarray], level_db: float) -> np.ndarray:
    """The lead with the backing parts summed at ``level_db`` below it (float32)."""
    lead_rms = sung_rms(lead)
    out = lead.astype(np.float32).copy()
    for part in parts:
        rms = sung_rms(part)
        if rms > 0 and lead_rms > 0:
            out += np.float32(lead_rms / rms * 10 ** (level_db / 20)) * part
    return out
