"""Recorded speech sung by pitch-synchronous overlap-add: real voices, no synthesizer at all.

The voice packs of the game Hedgewars (Debian `hedgewars-data`) are short lines spoken,
shouted and sung by people: fifteen packs, English ones and Spanish, Polish, Russian and
Ukrainian ones. Each line's voiced nucleus gets pitch marks and `psola` lays it at the sung
pitch, so the voice, its words, its breath and its room are a person's, not a synthesizer's.
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

PACKAGE = "hedgewars-data"
VOICE_ROOT = Path("/usr/share/games/hedgewars/Data/Sounds/voices")
MAX_ONSET_SECONDS = 0.15  # a line's words before its longest vowel: a sung syllable's onset
# Pitch is sought from this many semitones above a voice's low note (and `psola`'s two
# octaves around that): the actors shout well above the range they are given to sing in.
ANALYSIS_ABOVE_LOW = 8


@dataclass(frozen=True)
class SpeechVoice:
    """One voice pack: its folder under `VOICE_ROOT` and the lowest note it sings."""

    folder: str
    low: int  # lowest MIDI note of its natural range (the tenth percentile of its lines)


# The packs' tenth-percentile pitch, measured with WORLD over all their lines (the Russian,
# Ukrainian and Spanish packs' low readings are breath and creak, so 50 stands in). The
# Robot pack is left out: its voice went through a vocoder.
SPEECH_VOICES: dict[str, SpeechVoice] = {
    "hw-british": SpeechVoice("British", 54),
    "hw-classic": SpeechVoice("Classic", 54),
    "hw-default": SpeechVoice("Default", 54),
    "hw-default-es": SpeechVoice("Default_es", 50),
    "hw-default-pl": SpeechVoice("Default_pl", 50),
    "hw-default-ru": SpeechVoice("Default_ru", 50),
    "hw-default-uk": SpeechVoice("Default_uk", 50),
    "hw-hillbilly": SpeechVoice("HillBilly", 55),
    "hw-mobster": SpeechVoice("Mobster", 52),
    "hw-pirate": SpeechVoice("Pirate", 52),
    "hw-russian": SpeechVoice("Russian", 50),
    "hw-russian-pl": SpeechVoice("Russian_pl", 50),
    "hw-singer": SpeechVoice("Singer", 60),
    "hw-surfer": SpeechVoice("Surfer", 54),
}
# The voices the speech engine sings with unless a corpus names some: all but three, kept
# for held-out evaluation (a singing actor, a low growl and the Spanish pack).
DEFAULT_SPEECH_VOICES = tuple(v for v in SPEECH_VOICES
                              if v not in ("hw-singer", "hw-mobster", "hw-default-es"))
SPEECH_LOWS = {name: voice.low for name, voice in SPEECH_VOICES.items()}


def voice_lines(voice: str) -> list[Path]:
    """The recorded lines of a voice pack, sorted by name."""
    return sorted((VOICE_ROOT / SPEECH_VOICES[voice].folder).glob("*.ogg"))


def missing_tools(voices: tuple[str, ...]) -> str | None:
    """What the speech engine lacks to sing with ``voices``, or None when it can run."""
    unknown = [v for v in voices if v not in SPEECH_VOICES]
    if unknown:
        return f"the voice pack(s) {', '.join(unknown)}"
    absent = [v for v in voices if not voice_lines(v)]
    if absent:
        return (f"the recorded lines of {', '.join(absent)} under {VOICE_ROOT} "
                f"(Debian package {PACKAGE})")
    return psola.missing_pitch_analysis()


@lru_cache(maxsize=16)
def syllable_bank(voice: str, sample_rate: int) -> tuple[SpokenSyllable, ...]:
    """The voiced nucleus of each recorded line of the pack, with its pitch marks (lines
    with none, such as a breath, are dropped); read once per process."""
    spec = SPEECH_VOICES[voice]
    bank = []
    for path in voice_lines(voice):
        try:
            audio = read_mono(path, sample_rate).astype(np.float64)
        except (OSError, RuntimeError, ValueError) as exc:
            raise VoiceError(f"speech voice {voice}: cannot read {path} ({exc}); reinstall "
                             f"the Debian package {PACKAGE}") from exc
        syllable = psola.spoken_syllable(audio, sample_rate, spec.low + ANALYSIS_ABOVE_LOW,
                                         MAX_ONSET_SECONDS)
        if syllable is not None:
            bank.append(syllable)
    if not bank:
        raise VoiceError(f"speech voice {voice}: no voiced line under "
                         f"{VOICE_ROOT / spec.folder} (Debian package {PACKAGE})")
    return tuple(bank)


def render_singing(melody: list[SungNote], singer: VoiceSinger, n_samples: int,
                   sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """The sung vocal track of ``melody`` by a recorded voice (`psola.render_singing`)."""
    return psola.render_singing(melody, singer, syllable_bank(singer.voice, sample_rate),
                                n_samples, sample_rate, rng)
