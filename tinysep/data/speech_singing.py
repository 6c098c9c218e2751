"""Recorded speech sung by pitch-synchronous overlap-add: real voices, no synthesizer at all.

Three collections of people's voices, each from its own Debian package and recording chain:
the voice packs of the game Hedgewars (lines spoken, shouted and sung by actors), the letters
and syllables KLettres reads aloud, and the words KTuberling says, both recorded by native
speakers of many languages. Each line's voiced nucleus gets pitch marks and `psola` lays it at
the sung pitch, so the voice, its words, its breath and its room are a person's.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from tinysep.data import psola
from tinysep.data.audio_io import read_mono
from tinysep.data.psola import SpokenSyllable
from tinysep.data.score import SungNote
from tinysep.data.singing import VoiceError, VoiceSinger

MAX_ONSET_SECONDS = 0.15  # a line's words before its longest vowel: a sung syllable's onset
# Pitch is sought from this many semitones above a voice's low note (and `psola`'s two
# octaves around that): the actors shout well above the range they are given to sing in, and
# the readers' calmer lines still fall inside those octaves.
ANALYSIS_ABOVE_LOW = 8


@dataclass(frozen=True)
class VoiceCollection:
    """Where a collection's voices live: a root folder, the Debian package that installs it,
    and the pattern of one voice's recorded lines under its own folder."""

    root: Path
    package: str
    lines: str


COLLECTIONS: dict[str, VoiceCollection] = {
    "hedgewars": VoiceCollection(Path("/usr/share/games/hedgewars/Data/Sounds/voices"),
                                 "hedgewars-data", "*.ogg"),
    "klettres": VoiceCollection(Path("/usr/share/klettres"), "klettres-data", "*/*.ogg"),
    "ktuberling": VoiceCollection(Path("/usr/share/ktuberling/sounds"), "ktuberling-data",
                                  "*.ogg"),
}


@dataclass(frozen=True)
class SpeechVoice:
    """One voice: its collection, its folder there and the lowest note it sings."""

    collection: str
    folder: str
    low: int  # lowest MIDI note of its natural range (the tenth percentile of its lines)


def _voices(collection: str, prefix: str, lows: dict[str, int]) -> dict[str, SpeechVoice]:
    """A collection's voices by name: PREFIX-FOLDER, lower case, ``_`` as ``-``."""
    return {f"{prefix}-{folder.lower().replace('_', '-')}": SpeechVoice(collection, folder, low)
            for folder, low in lows.items()}


# Each voice's tenth-percentile pitch, measured with WORLD over all its lines. Hedgewars: the
# Russian, Ukrainian and Spanish packs' low readings are breath and creak, so 50 stands in,
# and the Robot pack is left out (its voice went through a vocoder). KLettres and KTuberling:
# readings below 43 (creak) are raised to it, and KLettres' Malayalam voice, whose creak
# breaks the pitch marks into double periods below it, starts at 50. Only languages with 40
# (KLettres) or 70 (KTuberling) lines or more are used, and not KTuberling's Galician voice,
# a child's, pitched above the notes a song gives.
SPEECH_VOICES: dict[str, SpeechVoice] = {
    **_voices("hedgewars", "hw", {
        "British": 54, "Classic": 54, "Default": 54, "Default_es": 50, "Default_pl": 50,
        "Default_ru": 50, "Default_uk": 50, "HillBilly": 55, "Mobster": 52, "Pirate": 52,
        "Russian": 50, "Russian_pl": 50, "Singer": 60, "Surfer": 54}),
    **_voices("klettres", "kl", {
        "cs": 57, "da": 43, "de": 43, "en": 44, "en_GB": 55, "es": 51, "fr": 44, "he": 43,
        "hu": 43, "it": 56, "lt": 43, "ml": 50, "nds": 43, "nl": 52, "pt_BR": 59, "ru": 54,
        "tn": 60, "uk": 55}),
    **_voices("ktuberling", "kt", {
        "ca": 43, "da": 47, "de": 47, "el": 47, "en": 44, "lt": 47, "ru": 46,
        "sl": 47, "uk": 54, "wa": 46}),
}
# Never sung unless named, kept for held-out evaluation: three Hedgewars packs (a singing
# actor, a low growl, the Spanish pack), all of KTuberling (a recording chain no default
# voice shares) and the KLettres languages KTuberling also has (perhaps the same speakers).
HELD_OUT_SPEECH_VOICES = ("hw-singer", "hw-mobster", "hw-default-es",
                          "kl-da", "kl-de", "kl-en", "kl-lt", "kl-ru", "kl-uk",
                          *(v for v in SPEECH_VOICES if v.startswith("kt-")))
DEFAULT_SPEECH_VOICES = tuple(v for v in SPEECH_VOICES if v not in HELD_OUT_SPEECH_VOICES)
SPEECH_LOWS = {name: voice.low for name, voice in SPEECH_VOICES.items()}


def voice_folder(voice: str) -> Path:
    """The folder that holds a voice's recorded lines."""
    spec = SPEECH_VOICES[voice]
    return COLLECTIONS[spec.collection].root / spec.folder


def voice_package(voice: str) -> str:
    """The Debian package that installs a voice."""
    return COLLECTIONS[SPEECH_VOICES[voice].collection].package


def voice_lines(voice: str) -> list[Path]:
    """The recorded lines of a voice, sorted by name."""
    pattern = COLLECTIONS[SPEECH_VOICES[voice].collection].lines
    return sorted(voice_folder(voice).glob(pattern))


def packages(voices: tuple[str, ...]) -> list[str]:
    """The Debian packages to install for ``voices`` (each collection has its own): those of
    the voices whose lines are missing, or of all of them when none is."""
    known = [v for v in voices if v in SPEECH_VOICES]
    absent = [v for v in known if not voice_lines(v)]
    return sorted({voice_package(v) for v in absent or known})


def missing_tools(voices: tuple[str, ...]) -> str | None:
    """What the speech engine lacks to sing with ``voices``, or None when it can run."""
    unknown = [v for v in voices if v not in SPEECH_VOICES]
    if unknown:
        return f"the voice(s) {', '.join(unknown)}"
    absent = [v for v in voices if not voice_lines(v)]
    if absent:
        packages = sorted({voice_package(v) for v in absent})
        return (f"the recorded lines of {', '.join(absent)} under "
                f"{', '.join(str(voice_folder(v)) for v in absent)} "
                f"(Debian package {', '.join(packages)})")
    return psola.missing_pitch_analysis()


@lru_cache(maxsize=64)
def syllable_bank(voice: str, sample_rate: int) -> tuple[SpokenSyllable, ...]:
    """The voiced nucleus of each recorded line of the voice, with its pitch marks (lines
    with none, such as a breath, are dropped); read once per process."""
    spec = SPEECH_VOICES[voice]
    bank = []
    for path in voice_lines(voice):
        try:
            audio = read_mono(path, sample_rate).astype(np.float64)
        except (OSError, RuntimeError, ValueError) as exc:
            raise VoiceError(f"speech voice {voice}: cannot read {path} ({exc}); reinstall "
                             f"the Debian package {voice_package(voice)}") from exc
        syllable = psola.spoken_syllable(audio, sample_rate, spec.low + ANALYSIS_ABOVE_LOW,
                                         MAX_ONSET_SECONDS)
        if syllable is not None:
            bank.append(syllable)
    if not bank:
        raise VoiceError(f"speech voice {voice}: no voiced line under "
                         f"{voice_folder(voice)} (Debian package {voice_package(voice)})")
    return tuple(bank)


def render_singing(melody: list[SungNote], singer: VoiceSinger, n_samples: int,
                   sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """The sung vocal track of ``melody`` by a recorded voice (`psola.render_singing`)."""
    return psola.render_singing(melody, singer, syllable_bank(singer.voice, sample_rate),
                                n_samples, sample_rate, rng)
