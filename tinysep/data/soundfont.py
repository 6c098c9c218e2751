"""Sampled real instruments: General MIDI sound fonts played by fluidsynth, one stem at a time.

Debian's sound fonts (FluidR3 GM, TimGM6mb, MuseScore General) hold recordings of real
instruments and drum kits. Each stem is rendered alone on a fresh synthesizer state (all
sounds off, controllers and programs reset) with fluidsynth's own reverb and chorus off, so
the corpus's production adds the rooms and a stem depends only on its notes: the same notes
give the same samples whatever was rendered before. Slakh-style arrangements pick General
MIDI programs per role from a style (pop, rock, jazz, electronic, folk, orchestral).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

# Font name -> (file, Debian package that installs it).
FONTS: dict[str, tuple[str, str]] = {
    "fluidr3": ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "fluid-soundfont-gm"),
    "timgm6mb": ("/usr/share/sounds/sf2/TimGM6mb.sf2", "timgm6mb-soundfont"),
    "musescore": ("/usr/share/sounds/sf3/MuseScore_General_Lite.sf3",
                  "musescore-general-soundfont-small"),
    "csound": ("/usr/share/sounds/sf2/sf_GMbank.sf2", "csound-soundfont"),
    "opl3": ("/usr/share/sounds/sf2/OPL-3_FM_128M.sf2", "opl3-soundfont"),
    # a GUS patch set, played by TiMidity++ (`tinysep.data.timidity`), not by fluidsynth
    "freepats": ("/etc/timidity/freepats.cfg", "timidity freepats"),
}
TIMIDITY_FONTS = ("freepats",)
# The fonts a corpus plays unless it names others: the sampled General MIDI banks. Csound's
# small GM bank and the OPL3 FM-chip emulation join by name, so corpora written before
# they existed keep their bytes.
DEFAULT_FONTS = ("fluidr3", "timgm6mb", "musescore")
DRUM_CHANNEL = 9  # General MIDI channel 10
DRUM_BANK = 128
MIDI_CHANNELS = 16
QUIET_LOG_LEVELS = (2, 3)  # fluidsynth's FLUID_WARN and FLUID_INFO
SYNTH_GAIN = 0.25
CHUNK = 4096  # longest get_samples call, samples

# General MIDI programs per arrangement role, by style (0-based program numbers). No
# accompaniment pool holds a sung sound (choir aahs, voice oohs, synth voice, choir pad): those
# are the choir engine's vocals, and a corpus must not call the same sound both sources.
STYLES: dict[str, dict[str, tuple[int, ...]]] = {
    "pop": {"pad": (48, 49, 89, 88, 50), "piano": (0, 1, 4, 24, 25), "organ": (16, 18, 61, 27),
            "lead": (80, 73, 56, 11, 65), "bass": (33, 34, 38), "kit": (0, 8, 16)},
    "rock": {"pad": (48, 29, 50), "piano": (29, 30, 27, 25), "organ": (16, 17, 18, 19),
             "lead": (30, 29, 81, 65), "bass": (33, 34, 35), "kit": (0, 16, 8)},
    "jazz": {"pad": (48, 49, 61, 16), "piano": (0, 4, 26, 11), "organ": (16, 17, 57, 11),
             "lead": (65, 66, 56, 73, 71), "bass": (32, 33), "kit": (32, 40, 0)},
    "electronic": {"pad": (88, 89, 90, 93, 94, 95), "piano": (4, 5, 81, 87, 98),
                   "organ": (17, 90, 92, 99), "lead": (80, 81, 84, 87), "bass": (38, 39, 87),
                   "kit": (24, 25, 0)},
    "folk": {"pad": (48, 21, 22, 49), "piano": (24, 25, 46, 105, 106), "organ": (21, 23, 19),
             "lead": (40, 73, 72, 75, 22), "bass": (32, 33, 43), "kit": (0, 8, 40)},
    "orchestral": {"pad": (48, 49, 50, 89), "piano": (46, 45, 8, 13), "organ": (60, 61, 42, 70),
                   "lead": (40, 73, 68, 71, 56), "bass": (42, 43, 58, 32), "kit": (48, 0)},
}
# Vocal-like programs for the choir engine: choir aahs, voice oohs, synth voice.
VOICE_PROGRAMS = (52, 53, 54)
SUNG_PROGRAMS = VOICE_PROGRAMS + (91,)
# Drum names of the score -> General MIDI percussion keys to choose from.
DRUM_KEYS = {"kick": (36, 35), "snare": (38, 40, 37, 39), "hat": (42, 44, 46, 51, 53)}
CRASH_KEYS = (49, 57, 55)


class FontError(RuntimeError):
    """A sound font that fluidsynth could not load (the songs using it are skipped)."""


@dataclass(frozen=True)
class MidiNote:
    """One note to play: onset and length in seconds, MIDI key, velocity 1-127."""

    start: float
    duration: float
    key: int
    velocity: int


def font_path(font: str) -> Path:
    """The file of a font name of `FONTS`, or ``font`` itself read as a path."""
    return Path(FONTS[font][0]) if font in FONTS else Path(font)


def load_fluidsynth():
    """The fluidsynth binding; ImportError (with the package to install) if it is missing."""
    try:
        import fluidsynth
    except (ImportError, OSError) as exc:
        raise ImportError(f"the fluidsynth library or its Python binding is missing ({exc}); "
                          f"install the Debian package fluidsynth (`make system-deps`) and "
                          f"pyfluidsynth (`make install`)") from exc
    return fluidsynth


class _Fluid:
    """The few libfluidsynth calls the renderer needs, on the library the binding loaded."""

    def __init__(self, fluidsynth) -> None:
        import ctypes

        lib = fluidsynth._fl
        vp, i = ctypes.c_void_p, ctypes.c_int
        signatures = {
            "new_fluid_synth": (vp, [vp]),
            "delete_fluid_synth": (None, [vp]),
            "fluid_synth_get_sfont_by_id": (vp, [vp, i]),
            "fluid_synth_add_sfont": (i, [vp, vp]),
            "fluid_synth_remove_sfont": (i, [vp, vp]),
            "fluid_synth_program_select": (i, [vp, i, i, i, i]),
            "fluid_synth_noteon": (i, [vp, i, i, i]),
            "fluid_synth_noteoff": (i, [vp, i, i]),
            "fluid_synth_write_float": (i, [vp, i, vp, i, i, vp, i, i]),
            "fluid_set_log_function": (vp, [i, vp, vp]),
        }
        for name, (restype, argtypes) in signatures.items():
            func = getattr(lib, name)
            func.restype, func.argtypes = restype, argtypes
            setattr(self, name, func)


@lru_cache(maxsize=4)
def _font(path: str, sample_rate: int):
    """A font loaded once per process; every stem gets a fresh synthesizer sharing it."""
    if not Path(path).is_file():
        raise FontError(f"sound font {path}: no such file")
    fluidsynth = load_fluidsynth()
    settings = {"synth.reverb.active": 0, "synth.chorus.active": 0, "synth.polyphony": 256,
                "synth.cpu-cores": 1, "synth.dynamic-sample-loading": 0}
    lib = _Fluid(fluidsynth)
    for level in QUIET_LOG_LEVELS:  # "no preset on channel N" for every fresh synthesizer
        lib.fluid_set_log_function(level, None, None)
    owner = fluidsynth.Synth(gain=SYNTH_GAIN, samplerate=float(sample_rate),
                             channels=MIDI_CHANNELS, **settings)
    sfid = owner.sfload(path)
    if sfid < 0:
        raise FontError(f"sound font {path}: fluidsynth could not load it")
    sfont = lib.fluid_synth_get_sfont_by_id(owner.synth, sfid)
    if not sfont:
        raise FontError(f"sound font {path}: loaded but not found in the synthesizer")
    return owner, sfont, lib


def check_font(font: str, sample_rate: int) -> None:
    """Raise FontError if ``font`` cannot be loaded."""
    if font in TIMIDITY_FONTS:
        from tinysep.data import timidity

        try:
            timidity.programs(str(font_path(font)))
        except timidity.TimidityError as exc:
            raise FontError(str(exc)) from exc
        return
    _font(str(font_path(font)), sample_rate)


def render_notes(font: str, program: int, notes: list[MidiNote], n_samples: int,
                 sample_rate: int, drums: bool = False) -> np.ndarray:
    """Play ``notes`` on one General MIDI program (or drum kit) of ``font``: mono float32.

    A fresh synthesizer per call (sharing the loaded font) makes the samples depend only on
    the notes, not on what the process rendered before. A patch set of `TIMIDITY_FONTS` is
    played by TiMidity++ instead.
    """
    if font in TIMIDITY_FONTS:
        from tinysep.data import timidity

        try:
            return timidity.render_notes(str(font_path(font)), program, notes, n_samples,
                                         sample_rate, DRUM_CHANNEL if drums else 0, drums)
        except timidity.TimidityError as exc:
            raise FontError(str(exc)) from exc
    owner, sfont, lib = _font(str(font_path(font)), sample_rate)
    synth = lib.new_fluid_synth(owner.settings)
    if not synth:
        raise FontError("fluidsynth could not create a synthesizer")
    try:
        sfid = lib.fluid_synth_add_sfont(synth, sfont)
        channel = DRUM_CHANNEL if drums else 0
        bank = DRUM_BANK if drums else 0
        if lib.fluid_synth_program_select(synth, channel, sfid, bank, program) != 0:
            lib.fluid_synth_program_select(synth, channel, sfid, bank, 0)
        events = []
        for note in notes:
            on = int(round(note.start * sample_rate))
            off = int(round((note.start + note.duration) * sample_rate))
            if on >= n_samples or not 0 <= note.key < 128:
                continue
            events.append((on, 1, note.key, int(np.clip(note.velocity, 1, 127))))
            events.append((max(off, on + 1), 0, note.key, 0))
        events.sort()
        out = np.zeros((n_samples, 2), dtype=np.float32)
        pos = 0
        for time, kind, key, velocity in events + [(n_samples, -1, 0, 0)]:
            time = min(time, n_samples)
            while pos < time:
                step = min(CHUNK, time - pos)
                ptr = out[pos:].ctypes.data
                if lib.fluid_synth_write_float(synth, step, ptr, 0, 2, ptr, 1, 2) != 0:
                    raise FontError("fluidsynth failed to render")
                pos += step
            if kind == 1:
                lib.fluid_synth_noteon(synth, channel, key, velocity)
            elif kind == 0:
                lib.fluid_synth_noteoff(synth, channel, key)
        lib.fluid_synth_remove_sfont(synth, sfont)
    finally:
        lib.delete_fluid_synth(synth)
    return out.mean(axis=1)


@dataclass(frozen=True)
class Arrangement:
    """General MIDI programs per role and the drum keys of one song."""

    style: str
    programs: dict[str, int]
    kit: int
    drum_keys: dict[str, int]


def random_arrangement(rng: np.random.Generator, roles: list[str]) -> Arrangement:
    """A style, then a program per role from the style's pools, a drum kit and drum keys."""
    names = sorted(STYLES)
    style = names[int(rng.integers(len(names)))]
    pools = STYLES[style]
    programs = {role: int(rng.choice(pools[role])) for role in sorted(roles)}
    keys = {name: int(rng.choice(options)) for name, options in sorted(DRUM_KEYS.items())}
    return Arrangement(style, programs, int(rng.choice(pools["kit"])), keys)


def to_midi(pitch: float) -> int:
    """Nearest MIDI key."""
    return int(np.clip(round(pitch), 0, 127))
