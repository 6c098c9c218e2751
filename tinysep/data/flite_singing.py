"""Statistical-parametric singing: CMU Flite's voices re-pitched by pitch-synchronous overlap-add.

Flite speaks a bank of syllables per voice. Its clustergen voices predict the spectrum
frame by frame from a statistical model and excite it with mixed pulses and noise: a
synthesizer unlike Festival's recorded diphones and unlike eSpeak NG's formant rules.
`psola` lays the voiced nuclei at the sung pitch, with no vocoder in between.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from tinysep.data import psola
from tinysep.data.psola import SpokenSyllable
from tinysep.data.score import SungNote
from tinysep.data.singing import WORD_SYLLABLES, VoiceError, VoiceSinger

PACKAGE = "flite"
FLITE_TIMEOUT = 60.0
DURATION_STRETCH = 1.6  # slow speech: longer vowels to stretch over the notes
MAX_ONSET_SECONDS = 0.12  # slow speech stretches consonants too; a sung one is short


@dataclass(frozen=True)
class FliteVoice:
    """One Flite voice: its built-in name, natural range, what it speaks."""

    name: str  # the ``-voice`` argument of flite
    low: int  # lowest MIDI note of its natural range
    syllables: tuple[str, ...]


# Scottish man, American man and woman (clustergen voices of the CMU ARCTIC speakers),
# and an American man's diphones at 16 kHz.
FLITE_VOICES: dict[str, FliteVoice] = {
    "flite-awb": FliteVoice("awb", 45, WORD_SYLLABLES),
    "flite-rms": FliteVoice("rms", 45, WORD_SYLLABLES),
    "flite-slt": FliteVoice("slt", 55, WORD_SYLLABLES),
    "flite-kal": FliteVoice("kal16", 45, WORD_SYLLABLES),
}
# The voices the flite engine sings with unless a corpus names some.
DEFAULT_FLITE_VOICES = tuple(FLITE_VOICES)
FLITE_LOWS = {name: voice.low for name, voice in FLITE_VOICES.items()}


def packages(voices: tuple[str, ...]) -> list[str]:
    """The Debian packages the flite engine needs to sing with ``voices``."""
    return [PACKAGE]


def missing_tools(voices: tuple[str, ...]) -> str | None:
    """What the flite engine lacks to sing with ``voices``, or None when it can run."""
    missing = psola.missing_tools("flite", PACKAGE, "Flite", voices, FLITE_VOICES)
    if missing is None:
        absent = [v for v in voices if FLITE_VOICES[v].name not in installed_voices()]
        if absent:
            missing = f"the Flite voice(s) {', '.join(absent)} (flite -lv does not list them)"
    return missing


@lru_cache(maxsize=1)
def installed_voices() -> frozenset[str]:
    """The voices ``flite -lv`` lists (flite speaks an unknown voice with its default one
    without a word, so the list is the only check)."""
    try:
        done = subprocess.run(["flite", "-lv"], capture_output=True, text=True,
                              timeout=FLITE_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    _, _, listed = done.stdout.partition(":")
    return frozenset(listed.split())


@lru_cache(maxsize=16)
def syllable_bank(voice: str, sample_rate: int) -> tuple[SpokenSyllable, ...]:
    """Flite speaks each of the voice's syllables once per process; their voiced nuclei get
    pitch marks."""
    spec = FLITE_VOICES[voice]
    if spec.name not in installed_voices():
        raise VoiceError(f"flite voice {voice}: flite has no voice {spec.name!r} "
                         f"(flite -lv lists {', '.join(sorted(installed_voices())) or 'none'})")

    def command(text: str, path: Path) -> list[str]:
        return ["flite", "-voice", spec.name, "--setf", f"duration_stretch={DURATION_STRETCH}",
                "-t", text, "-o", str(path)]

    return psola.spoken_bank("flite", voice, spec.syllables, command, sample_rate, spec.low,
                             FLITE_TIMEOUT, MAX_ONSET_SECONDS)


def render_singing(melody: list[SungNote], singer: VoiceSinger, n_samples: int,
                   sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """The sung vocal track of ``melody`` by a Flite singer (`psola.render_singing`)."""
    return psola.render_singing(melody, singer, syllable_bank(singer.voice, sample_rate),
                                n_samples, sample_rate, rng)
