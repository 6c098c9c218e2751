"""Formant-synthesized singing: eSpeak NG's voices re-pitched by pitch-synchronous overlap-add.

eSpeak NG speaks a bank of syllables per voice with its own formant synthesizers (its
default one and the Klatt ones), a world apart from Festival's recorded diphones; `psola`
lays their voiced nuclei at the sung pitch, with no vocoder in between.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from tinysep.data import psola
from tinysep.data.psola import SpokenSyllable
from tinysep.data.score import SungNote
from tinysep.data.singing import OPEN_SYLLABLES, WORD_SYLLABLES, VoiceSinger

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


def packages(voices: tuple[str, ...]) -> list[str]:
    """The Debian packages the espeak engine needs to sing with ``voices``."""
    return [PACKAGE]


def missing_tools(voices: tuple[str, ...]) -> str | None:
    """What the espeak engine lacks to sing with ``voices``, or None when it can run."""
    return psola.missing_tools("espeak-ng", PACKAGE, "eSpeak NG", voices, ESPEAK_VOICES)


@lru_cache(maxsize=16)
def syllable_bank(voice: str, sample_rate: int) -> tuple[SpokenSyllable, ...]:
    """eSpeak NG speaks each of the voice's syllables once per process; their voiced nuclei
    get pitch marks."""
    spec = ESPEAK_VOICES[voice]

    def command(text: str, path: Path) -> list[str]:
        return ["espeak-ng", "-v", spec.spec, "-s", str(SPEED_WPM), "-z", "-w", str(path), text]

    return psola.spoken_bank("espeak", voice, spec.syllables, command, sample_rate, spec.low,
                             ESPEAK_TIMEOUT)


def render_singing(melody: list[SungNote], singer: VoiceSinger, n_samples: int,
                   sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """The sung vocal track of ``melody`` by an eSpeak NG singer (`psola.render_singing`)."""
    return psola.render_singing(melody, singer, syllable_bank(singer.voice, sample_rate),
                                n_samples, sample_rate, rng)
