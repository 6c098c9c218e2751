"""The corpus's music engines, chosen per song, and the four stems each song renders to.

Accompaniment engines (drums, bass, other):
- ``additive``: harmonic-partial instruments and synthetic drums (`instruments`, `drums`);
- ``soundfont``: sampled real instruments and drum kits from General MIDI sound fonts played by
  fluidsynth, in Slakh-style arrangements (`soundfont`);
- ``physical``: Karplus-Strong plucks, bowed strings, FM keys and bells, modal drums
  (`physical`);
- ``subtractive``: analog-style synthesizers (detuned saws and pulses through resonant
  filter sweeps) and drum machines (`subtractive`); it plays only when named, so corpora
  written before it existed keep their bytes;
- ``recorded``: an excerpt of an instrumental recording from one of the corpus's collections
  (`recordings`); the collection is drawn per song from ``default_rng([seed, 11, song])``, the
  file and the excerpt from the song's engine generator; it plays only when named.

Vocal engines:
- ``additive``: the glottal-pulse and formant singer (`voice`);
- ``festival``: Festival's recorded voices (diphone, unit-selection and HTS voices of
  several speakers and languages) re-pitched onto the melody with the WORLD vocoder
  (`singing`); a corpus names the voices it sings with, so evaluation can hold one out;
- ``choir``: the sound fonts' choir and voice samples (choir aahs, voice oohs, synth voice);
- ``espeak``: eSpeak NG's formant-synthesized voices re-pitched by pitch-synchronous
  overlap-add (`espeak_singing`); it sings only when named, with its own voices;
- ``flite``: CMU Flite's statistical-parametric (clustergen) and diphone voices re-pitched
  the same way (`flite_singing`); it sings only when named, with its own voices;
- ``speech``: people's recorded lines (Hedgewars' voice packs, KLettres' and KTuberling's
  speakers) re-pitched the same way (`speech_singing`): a person's voice with no
  synthesizer; it sings only when named.

``additive`` names both an accompaniment and a vocal engine. A song draws its vocal engine
and its accompaniment engine independently (uniformly among the selected ones) from
``default_rng([seed, 5, song])``, and one sound font for both when it uses one, so
evaluation can hold out an engine or a font. The score (key, tempo, form, parts, melody)
always comes from `score.compose` with ``default_rng([seed, 1, song])``; a song with both
engines ``additive`` renders exactly as the single-engine corpus did.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from tinysep.data import backing as backing_vocals
from tinysep.data import (
    espeak_singing,
    flite_singing,
    physical,
    recordings,
    singing,
    soundfont,
    speech_singing,
    subtractive,
)
from tinysep.data.drums import render_drums
from tinysep.data.instruments import random_timbre, render_part
from tinysep.data.score import FIRST_COMPOSER, SongScore, compose
from tinysep.data.sources import ACCOMPANIMENT_STEMS
from tinysep.data.through_composed import compose_through
from tinysep.data.voice import Singer, random_singer, render_voice

VOCAL_ENGINES = ("additive", "festival", "choir", "espeak", "flite", "speech")
ACCOMPANIMENT_ENGINES = ("additive", "soundfont", "physical", "subtractive", "recorded")
# The engines that play unless a corpus names others; the later engines join by name.
STANDARD_ENGINES = ("additive", "soundfont", "physical", "festival", "choir")
ENGINES = (*STANDARD_ENGINES, "subtractive", "espeak", "flite", "recorded", "speech")
FONT_ENGINES = ("soundfont", "choir")
N_SINGERS = 12
# Loudness of each accompaniment part, dB relative to the others (uniform range).
PART_LEVELS_DB = {"pad": (-3.0, 0.0), "piano": (-3.0, 0.0), "organ": (-4.0, -1.0),
                  "lead": (-6.0, -2.0), "bass": (-4.0, 0.0), "drums": (-4.0, 0.0),
                  "recording": (0.0, 0.0)}
CHOIR_LOW = (48, 60)  # lowest note of a choir part, MIDI
# Vocal engines that can add backing vocals (their own singers); the choir engine never does,
# so a corpus that holds it out keeps its sound out entirely.
BACKING_ENGINES = ("additive", "festival", "espeak", "flite", "speech")
# The engines that sing with named voices, their voices and the voices they sing by default.
VOICE_ENGINES = {
    "festival": (singing.VOICES, singing.DEFAULT_VOICES),
    "espeak": (espeak_singing.ESPEAK_VOICES, espeak_singing.DEFAULT_ESPEAK_VOICES),
    "flite": (flite_singing.FLITE_VOICES, flite_singing.DEFAULT_FLITE_VOICES),
    "speech": (speech_singing.SPEECH_VOICES, speech_singing.DEFAULT_SPEECH_VOICES),
}
# The module that sings for each voice engine, and the engines that sing by overlap-add.
SINGING_MODULES = {"festival": singing, "espeak": espeak_singing, "flite": flite_singing,
                   "speech": speech_singing}
PSOLA_ENGINES = ("espeak", "flite", "speech")
# The lowest note of each voice of the overlap-add engines (Festival's voices carry their own).
PSOLA_LOWS = {"espeak": espeak_singing.ESPEAK_LOWS, "flite": flite_singing.FLITE_LOWS,
              "speech": speech_singing.SPEECH_LOWS}
# Who writes a song's score: `score.compose` (4/4 loops) or `through_composed` (other meters,
# parts redrawn from bar to bar). A corpus that names no composers is written by the loops.
COMPOSERS = {FIRST_COMPOSER: compose, "through": compose_through}
DEFAULT_COMPOSERS = (FIRST_COMPOSER,)


class EngineUnavailable(RuntimeError):
    """An engine whose programs, voices or sound fonts are not installed."""


@dataclass(frozen=True)
class SongPlan:
    """Which engines (and font, singer) render one song; a pure function of seed and index."""

    index: int
    vocal_engine: str
    accompaniment_engine: str
    font: str | None
    singer: str
    voice: str | None = None  # the voice of a song of a voice engine
    voices: tuple[str, ...] = singing.DEFAULT_VOICES  # the corpus's voices (all voice engines)
    composer: str | None = None  # who wrote the score, when the corpus names its composers
    recording: str | None = None  # the collection a ``recorded`` song's accompaniment is from

    @property
    def song_id(self) -> str:
        """``{singer}_{song}`` as MIR-1K names its songs; song numbers start at 1."""
        return f"{self.singer}_{self.index + 1:03d}"

    def engines(self) -> dict:
        """What plays, per role; ``voice`` only for a song of a voice engine."""
        engines = {"vocals": self.vocal_engine, "accompaniment": self.accompaniment_engine,
                   "font": self.font}
        if self.voice is not None:
            engines["voice"] = self.voice
        if self.composer is not None:
            engines["composer"] = self.composer
        if self.recording is not None:
            engines["recording"] = self.recording
        return engines


def _names(text: str | list[str] | tuple[str, ...]) -> list[str]:
    """The names of ``"a, b"`` or of a list, stripped, empty ones left out."""
    return [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]


def parse_engines(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Engine names from ``"a,b"`` or a list; error on unknown names or no vocal/accompaniment
    engine among them."""
    names = _names(text)
    unknown = [n for n in names if n not in ENGINES]
    if unknown or not names:
        raise ValueError(f"unknown engine(s) {', '.join(unknown) or '(none)'}; expected a "
                         f"comma-separated list of {', '.join(ENGINES)}")
    chosen = tuple(n for n in ENGINES if n in names)
    if not any(n in VOCAL_ENGINES for n in chosen):
        raise ValueError(f"engines {','.join(chosen)} have no vocal engine; add one of "
                         f"{', '.join(VOCAL_ENGINES)}")
    if not any(n in ACCOMPANIMENT_ENGINES for n in chosen):
        raise ValueError(f"engines {','.join(chosen)} have no accompaniment engine; add one "
                         f"of {', '.join(ACCOMPANIMENT_ENGINES)}")
    return chosen


def parse_composers(text: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Composer names of `COMPOSERS` from ``"a,b"`` or a list, in that table's order
    (default `DEFAULT_COMPOSERS`); error on unknown names."""
    if text is None:
        return DEFAULT_COMPOSERS
    names = _names(text)
    unknown = [n for n in names if n not in COMPOSERS]
    if unknown or not names:
        raise ValueError(f"unknown composer(s) {', '.join(unknown) or '(none)'}; expected a "
                         f"comma-separated list of {', '.join(COMPOSERS)}")
    return tuple(n for n in COMPOSERS if n in names)


def parse_fonts(text: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Sound font names of `soundfont.FONTS` or paths to .sf2/.sf3 files (default:
    `soundfont.DEFAULT_FONTS`)."""
    if text is None:
        return soundfont.DEFAULT_FONTS
    names = _names(text)
    if not names:
        raise ValueError(f"no sound font given; expected names among "
                         f"{', '.join(soundfont.FONTS)} or paths to .sf2/.sf3 files")
    for name in names:
        if name not in soundfont.FONTS and not name.lower().endswith((".sf2", ".sf3")):
            raise ValueError(f"unknown sound font {name!r}; expected one of "
                             f"{', '.join(soundfont.FONTS)} or a path to a .sf2/.sf3 file")
    return tuple(names)


def parse_voices(text: str | list[str] | tuple[str, ...] | None,
                 engines: tuple[str, ...]) -> tuple[str, ...]:
    """The corpus's voices, sorted: the named ones (``"a,b"`` or a list) of the Festival,
    eSpeak NG and Flite voices, and each voice engine's defaults when none of its voices is named.
    Refuses unknown names and voices of an engine that is not among ``engines``."""
    known = {name: engine for engine, (voices, _) in VOICE_ENGINES.items() for name in voices}
    names = [] if text is None else _names(text)
    unknown = [n for n in names if n not in known]
    if unknown or (text is not None and not names):
        raise ValueError(f"unknown voice(s) {', '.join(unknown) or '(none)'}; expected a "
                         f"comma-separated list of {', '.join(known)}")
    idle = sorted({known[n] for n in names} - set(engines))
    if idle:
        raise ValueError(f"voices {','.join(names)} sing with the {' and '.join(idle)} "
                         f"engine(s), which engines {','.join(engines)} leave out")
    chosen = set(names)
    for engine, (voices, defaults) in VOICE_ENGINES.items():
        if engine in engines and not any(n in voices for n in chosen):
            chosen.update(defaults)
    return tuple(sorted(chosen)) or singing.DEFAULT_VOICES


def engine_voices(engine: str, voices: tuple[str, ...]) -> tuple[str, ...]:
    """The voices among ``voices`` that ``engine`` sings with (its defaults if none)."""
    own, defaults = VOICE_ENGINES[engine]
    return tuple(v for v in voices if v in own) or defaults


def _install_hint(packages: list[str]) -> str:
    return (f"install the Debian package(s) {' '.join(packages)} (`make system-deps` installs "
            f"everything the engines need)")


def check_engines(engines: tuple[str, ...], fonts: tuple[str, ...],
                  voices: tuple[str, ...] = singing.DEFAULT_VOICES,
                  collections: tuple[str, ...] = ()) -> None:
    """Raise EngineUnavailable naming the engine and the Debian package it lacks (for a
    user's folder of recordings: what is wrong with it)."""
    if "recorded" in engines:
        for collection in collections:
            missing = recordings.missing_collection(collection)
            if missing is not None:
                raise EngineUnavailable(f"engine recorded: {missing}")
    if any(e in FONT_ENGINES for e in engines):
        users = ", ".join(e for e in engines if e in FONT_ENGINES)
        try:
            soundfont.load_fluidsynth()
        except ImportError as exc:
            raise EngineUnavailable(f"engine {users}: {exc}") from exc
        for font in fonts:
            if font in soundfont.FONTS:
                path, package = soundfont.FONTS[font]
                if not soundfont.font_path(font).is_file():
                    raise EngineUnavailable(f"engine {users}: sound font {font} ({path}) is "
                                            f"missing; {_install_hint([package])}, or choose "
                                            f"other fonts with --fonts")
                if font in soundfont.TIMIDITY_FONTS and shutil.which("timidity") is None:
                    raise EngineUnavailable(f"engine {users}: font {font} is played by the "
                                            f"timidity program, which is missing; "
                                            f"{_install_hint([package])}, or choose other "
                                            f"fonts with --fonts")
            elif not soundfont.font_path(font).is_file():
                raise EngineUnavailable(f"engine {users}: sound font file {font} does not exist")
    if "festival" in engines:
        festival_voices = engine_voices("festival", voices)
        missing = singing.missing_tools(festival_voices)
        if missing is not None:
            packages = ["festival"] + [singing.VOICES[v].package for v in festival_voices]
            raise EngineUnavailable(f"engine festival: {missing} is missing; "
                                    f"{_install_hint(packages)}, or choose other voices "
                                    f"with --voices")
    for engine in PSOLA_ENGINES:
        if engine in engines:
            module = SINGING_MODULES[engine]
            engine_voice_names = engine_voices(engine, voices)
            missing = module.missing_tools(engine_voice_names)
            if missing is not None:
                raise EngineUnavailable(f"engine {engine}: {missing} is missing; "
                                        f"{_install_hint(module.packages(engine_voice_names))}")


@lru_cache(maxsize=8)
def singer_pool(seed: int) -> tuple[Singer, ...]:
    """The additive singers; a song picks one, so a voice recurs across songs (as in MIR-1K)."""
    rng = np.random.default_rng([seed, 0])
    return tuple(random_singer(rng, f"singer{i:02d}") for i in range(N_SINGERS))


def song_singer(seed: int, index: int) -> Singer:
    """The additive singer of song ``index`` (a pure function of seed and index)."""
    rng = np.random.default_rng([seed, 3, index])
    return singer_pool(seed)[int(rng.integers(N_SINGERS))]


def _voice_singer(seed: int, index: int, engine: str,
                  voices: tuple[str, ...]) -> singing.VoiceSinger:
    """The singer of song ``index`` by a voice engine, on one of the engine's voices."""
    rng = np.random.default_rng([seed, 6, index])
    return _draw_voice_singer(rng, engine, voices)


def _draw_voice_singer(rng: np.random.Generator, engine: str,
                       voices: tuple[str, ...]) -> singing.VoiceSinger:
    return singing.random_singer(rng, sorted(engine_voices(engine, voices)),
                                 int(rng.integers(10)), PSOLA_LOWS.get(engine))


def _render_voice_singer(engine: str, melody: list, singer: singing.VoiceSinger, n: int, sr: int,
                         rng: np.random.Generator) -> np.ndarray:
    return SINGING_MODULES[engine].render_singing(melody, singer, n, sr, rng)


def plan_song(seed: int, index: int, engines: tuple[str, ...], fonts: tuple[str, ...],
              voices: tuple[str, ...] = singing.DEFAULT_VOICES,
              composers: tuple[str, ...] = DEFAULT_COMPOSERS,
              collections: tuple[str, ...] = ()) -> SongPlan:
    """Engines, font, singer, (voice engine's) voice and, when the corpus names its composers,
    the composer of song ``index`` (drawn from ``default_rng([seed, 10, song])``, so the rest
    of the plan is the same whoever composes); a ``recorded`` song's collection of
    ``collections``."""
    rng = np.random.default_rng([seed, 5, index])
    vocal_options = [e for e in engines if e in VOCAL_ENGINES]
    acc_options = [e for e in engines if e in ACCOMPANIMENT_ENGINES]
    vocal = vocal_options[int(rng.integers(len(vocal_options)))]
    acc = acc_options[int(rng.integers(len(acc_options)))]
    font_index = int(rng.integers(len(fonts))) if fonts else 0
    font = fonts[font_index] if uses_font(vocal, acc) and fonts else None
    voice = None
    if vocal == "additive":
        singer = song_singer(seed, index).name
    elif vocal in VOICE_ENGINES:
        voice_singer = _voice_singer(seed, index, vocal, voices)
        singer, voice = voice_singer.name, voice_singer.voice
    else:
        singer = f"choir{int(rng.integers(10))}"
    composer = None
    if tuple(composers) != DEFAULT_COMPOSERS:
        pick = np.random.default_rng([seed, 10, index]).integers(len(composers))
        composer = composers[int(pick)]
    recording = None
    if acc == "recorded":
        if not collections:
            raise ValueError("the recorded engine needs at least one collection of recordings")
        pick = np.random.default_rng([seed, 11, index]).integers(len(collections))
        recording = collections[int(pick)]
    return SongPlan(index, vocal, acc, font, singer, voice, tuple(voices), composer, recording)


def uses_font(vocal: str, accompaniment: str) -> bool:
    """Whether a song with these engines plays a sound font."""
    return vocal in FONT_ENGINES or accompaniment in FONT_ENGINES


def _soundfont_tracks(score: SongScore, font: str, n: int, sr: int,
                      rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict]:
    roles = sorted(score.parts)
    arr = soundfont.random_arrangement(rng, roles)
    tracks = {}
    for name in roles:
        notes = [soundfont.MidiNote(x.start, x.duration, soundfont.to_midi(x.pitch),
                                    int(round(20 + 100 * x.velocity)))
                 for x in score.parts[name]]
        tracks[name] = soundfont.render_notes(font, arr.programs[name], notes, n, sr)
    if score.drums:
        hits = [soundfont.MidiNote(t, 0.15, arr.drum_keys[drum], int(round(20 + 100 * v)))
                for drum, drum_hits in sorted(score.drums.items()) for t, v in drum_hits]
        crash = int(rng.choice(soundfont.CRASH_KEYS))
        for i, bar in enumerate(score.bars):
            if i == 0 or bar.section_index != score.bars[i - 1].section_index:
                if rng.random() < 0.6:
                    hits.append(soundfont.MidiNote(bar.start, 0.5, crash, 90))
        tracks["drums"] = soundfont.render_notes(font, arr.kit, hits, n, sr, drums=True)
    return tracks, {"style": arr.style, "programs": arr.programs, "kit": arr.kit}


# Engines that draw a sound per arrangement role from their module: (module, draw, the key
# of the song's description, what of a sound it names).
_SOUND_ENGINES = {
    "physical": (physical, physical.random_model, "models", lambda model: model.kind),
    "subtractive": (subtractive, subtractive.random_patch, "waves", lambda patch: patch.wave),
}


def _sound_engine_tracks(engine: str, score: SongScore, n: int, sr: int,
                         rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict]:
    """A part per role on a sound drawn for it, and the engine's own drums."""
    module, draw, key, describe = _SOUND_ENGINES[engine]
    tracks, sounds = {}, {}
    for name in sorted(score.parts):
        sound = draw(rng, name)
        sounds[name] = describe(sound)
        tracks[name] = module.render_part(score.parts[name], sound, n, sr, rng)
    if score.drums:
        tracks["drums"] = module.render_drums(score.drums, n, sr, rng)
    return tracks, {key: sounds}


def _sing(plan: SongPlan, line: list, seed: int, n: int, sr: int,
          rng: np.random.Generator) -> np.ndarray:
    """One backing line sung by a singer of the song's vocal engine drawn from ``rng``."""
    if plan.vocal_engine == "additive":
        singer = singer_pool(seed)[int(rng.integers(N_SINGERS))]
        return render_voice(line, singer, n, sr, rng)
    voice_singer = _draw_voice_singer(rng, plan.vocal_engine, plan.voices)
    return _render_voice_singer(plan.vocal_engine, line, voice_singer, n, sr, rng)


def add_backing(seed: int, plan: SongPlan, score: SongScore, lead: np.ndarray,
                vocal_range: tuple[int, int], seconds: float, sr: int,
                probability: float) -> tuple[np.ndarray, dict | None]:
    """The lead vocals with backing vocals of its own engine (a harmony line or sustained
    chord oohs) in a ``probability`` share of songs, drawn from ``default_rng([seed, 9,
    song])`` so the rest of the song renders as without them; returns (vocals, what was
    added or None)."""
    if probability <= 0 or plan.vocal_engine not in BACKING_ENGINES:
        return lead, None
    rng = np.random.default_rng([seed, 9, plan.index])
    if rng.random() >= probability:
        return lead, None
    if rng.random() < 0.5:
        steps = int(rng.choice(backing_vocals.HARMONY_STEPS, p=backing_vocals.HARMONY_WEIGHTS))
        lines = [backing_vocals.harmony_line(score.melody, score, steps)]
        level = float(rng.uniform(*backing_vocals.HARMONY_LEVEL_DB))
        info: dict = {"kind": "harmony", "scale_steps": steps}
    else:
        voices = int(rng.integers(backing_vocals.OOH_VOICES[0], backing_vocals.OOH_VOICES[1] + 1))
        lines = backing_vocals.ooh_lines(score, vocal_range, voices, seconds, rng)
        level = float(rng.uniform(*backing_vocals.OOH_LEVEL_DB))
        info = {"kind": "oohs", "voices": voices}
    lines = [line for line in lines if line]
    if not lines:
        return lead, None
    parts = [_sing(plan, line, seed, len(lead), sr, rng) for line in lines]
    info["level_db"] = round(level, 2)
    return backing_vocals.mix_backing(lead, parts, level), info


@dataclass
class RenderedSong:
    """The four dry stems of one song (float32) and a description of what plays."""

    plan: SongPlan
    stems: dict[str, np.ndarray]
    accompaniment: np.ndarray  # drums + bass + other, summed part by part
    info: dict


def render_stems(seed: int, plan: SongPlan, seconds: float, sr: int,
                 backing: float = 0.0) -> RenderedSong:
    """Render one song with its planned engines: vocals, drums, bass, other (dry);
    ``backing``: share of additive, festival, espeak, flite and speech songs given backing vocals
    (`add_backing`)."""
    index = plan.index
    rng = np.random.default_rng([seed, 1, index])
    n = int(round(seconds * sr))
    voice_singer = None
    if plan.vocal_engine == "additive":
        singer = song_singer(seed, index)
        vocal_range = singer.vocal_range
    elif plan.vocal_engine in VOICE_ENGINES:
        voice_singer = _voice_singer(seed, index, plan.vocal_engine, plan.voices)
        vocal_range = voice_singer.vocal_range
    else:
        low = int(np.random.default_rng([seed, 6, index]).integers(*CHOIR_LOW))
        vocal_range = (low, low + 14)
    score = COMPOSERS[plan.composer or FIRST_COMPOSER](rng, seconds, vocal_range)
    info: dict = {"key": score.key_name, "tempo_bpm": round(score.tempo_bpm, 2)}
    if plan.composer is not None:
        info["composer"] = plan.composer
        info["beats_per_bar"] = score.beats_per_bar

    engine_rng = np.random.default_rng([seed, 8, index])
    if plan.accompaniment_engine == "additive":
        tracks = {name: render_part(notes, random_timbre(rng, name), n, sr, rng)
                  for name, notes in sorted(score.parts.items())}
        if score.drums:
            tracks["drums"] = render_drums(score.drums, n, sr, rng)
    elif plan.accompaniment_engine == "soundfont":
        tracks, extra = _soundfont_tracks(score, plan.font, n, sr, engine_rng)
        info.update(extra)
    elif plan.accompaniment_engine == "recorded":
        excerpt, extra = recordings.recorded_excerpt(plan.recording, n, sr, engine_rng)
        tracks = {"recording": excerpt}
        info.update(extra)
    else:
        tracks, extra = _sound_engine_tracks(plan.accompaniment_engine, score, n, sr,
                                             engine_rng)
        info.update(extra)

    accompaniment = np.zeros(n, dtype=np.float32)
    stems = {name: np.zeros(n, dtype=np.float32) for name in ACCOMPANIMENT_STEMS}
    for name, track in tracks.items():
        rms = backing_vocals.sung_rms(track)
        if rms > 0:
            level = 10 ** (rng.uniform(*PART_LEVELS_DB[name]) / 20)
            part = np.float32(level / rms) * track
            accompaniment += part
            stems[name if name in ("drums", "bass") else "other"] += part

    if plan.vocal_engine == "additive":
        vocals = render_voice(score.melody, singer, n, sr, rng)
        info["singer"] = singer.name
    elif plan.vocal_engine in VOICE_ENGINES:
        vocals = _render_voice_singer(plan.vocal_engine, score.melody, voice_singer, n, sr,
                                      engine_rng)
        info["singer"] = voice_singer.name
        info["voice"] = voice_singer.voice
    else:
        program = int(engine_rng.choice(soundfont.VOICE_PROGRAMS))
        notes = [soundfont.MidiNote(x.start, x.duration, soundfont.to_midi(x.pitch),
                                    int(round(40 + 80 * x.velocity))) for x in score.melody]
        vocals = soundfont.render_notes(plan.font, program, notes, n, sr)
        info["singer"] = plan.singer
        info["voice_program"] = program
    vocals, backing_info = add_backing(seed, plan, score, vocals, vocal_range, seconds, sr,
                                       backing)
    if backing_info is not None:
        info["backing_vocals"] = backing_info
    info["instruments"] = sorted(tracks)
    info["sung_notes"] = len(score.melody)
    return RenderedSong(plan, {"vocals": vocals.astype(np.float32), **stems}, accompaniment,
                        info)
