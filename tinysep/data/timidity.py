"""Sampled instruments of a GUS patch set (Debian's ``freepats``) played by TiMidity++.

A second sampler beside fluidsynth: other recordings of real instruments and drums, other
envelopes and interpolation. Each stem is written as a one-track Standard MIDI File and
rendered alone by a ``timidity`` process with its reverb, chorus and delay off and the
silence before the first note kept, so the corpus's production adds the rooms and the same
notes give the same samples. A patch set lacks some General MIDI programs; those are played
by the nearest program of the same family (eight programs each) that it has, else by the
nearest program it has.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile

TICKS_PER_SECOND = 960  # 480 ticks per quarter note at 120 beats per minute
TEMPO_US_PER_QUARTER = 500_000
AMPLIFICATION = 50  # TiMidity's -A (percent): headroom so that chords do not clip
RENDER_TIMEOUT_S = 120.0
FAMILY = 8  # General MIDI programs per instrument family


class TimidityError(RuntimeError):
    """TiMidity++ or its patch set is missing or failed (the songs using it are skipped)."""


@lru_cache(maxsize=8)
def programs(config: str) -> tuple[int, ...]:
    """The melodic General MIDI programs (bank 0) that the configuration file ``config``
    maps to a patch file."""
    path = Path(config)
    if not path.is_file():
        raise TimidityError(f"TiMidity configuration {path}: no such file")
    found, section = set(), None
    for line in path.read_text(errors="replace").splitlines():
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if words[0] in ("bank", "drumset"):
            section = (words[0], words[1] if len(words) > 1 else "")
        elif section == ("bank", "0") and re.fullmatch(r"\d+", words[0]) and len(words) > 1:
            found.add(int(words[0]))
    if not found:
        raise TimidityError(f"TiMidity configuration {path}: no program in bank 0")
    return tuple(sorted(found))


def nearest_program(config: str, program: int) -> int:
    """``program`` if the patch set has it, else the nearest one of its family, else the
    nearest one it has."""
    have = programs(config)
    if program in have:
        return program
    family = [p for p in have if p // FAMILY == program // FAMILY]
    pool = family or list(have)
    return min(pool, key=lambda p: (abs(p - program), p))


def _vlq(value: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(reversed(out))


def midi_file(program: int, notes: list, channel: int, n_samples: int,
              sample_rate: int) -> bytes:
    """A format-0 Standard MIDI File playing ``notes`` (MidiNote) on ``program``."""
    events = []
    for note in notes:
        start = int(round(note.start * TICKS_PER_SECOND))
        end = int(round((note.start + note.duration) * TICKS_PER_SECOND))
        if note.start * sample_rate >= n_samples or not 0 <= note.key < 128:
            continue
        events.append((start, 1, note.key, int(np.clip(note.velocity, 1, 127))))
        events.append((max(end, start + 1), 0, note.key, 0))
    events.sort(key=lambda e: (e[0], e[1], e[2]))  # note-offs before note-ons at one tick
    track = bytearray(b"\x00\xff\x51\x03" + TEMPO_US_PER_QUARTER.to_bytes(3, "big"))
    track += bytes([0, 0xC0 | channel, program & 0x7F])
    now = 0
    for tick, on, key, velocity in events:
        track += _vlq(tick - now) + bytes([(0x90 if on else 0x80) | channel, key, velocity])
        now = tick
    track += b"\x00\xff\x2f\x00"
    division = TICKS_PER_SECOND * TEMPO_US_PER_QUARTER // 1_000_000
    return (b"MThd" + struct.pack(">IHHH", 6, 0, 1, division)
            + b"MTrk" + struct.pack(">I", len(track)) + bytes(track))


def render_notes(config: str, program: int, notes: list, n_samples: int, sample_rate: int,
                 channel: int, drums: bool = False) -> np.ndarray:
    """Play ``notes`` on MIDI ``channel`` with one program (or, ``drums``, the drum kit, on
    the drum channel) of the patch set: mono float32."""
    if shutil.which("timidity") is None:
        raise TimidityError("the timidity program is missing; install the Debian package "
                            "timidity (`make system-deps`)")
    chosen = 0 if drums else nearest_program(config, program)
    data = midi_file(chosen, notes, channel, n_samples, sample_rate)
    with tempfile.TemporaryDirectory(prefix="tinysep-timidity-") as folder:
        midi, wav = Path(folder) / "stem.mid", Path(folder) / "stem.wav"
        midi.write_bytes(data)
        command = ["timidity", "-c", str(config), "-s", str(sample_rate), "-Ow",
                   "--output-mono", "--output-24bit", "-A", str(AMPLIFICATION),
                   "-EFreverb=0", "-EFchorus=0", "-EFdelay=0", "--preserve-silence",
                   "-o", str(wav), str(midi)]
        try:
            result = subprocess.run(command, capture_output=True, text=True,
                                    timeout=RENDER_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise TimidityError(f"timidity took more than {RENDER_TIMEOUT_S:g} s") from exc
        if result.returncode != 0 or not wav.is_file():
            raise TimidityError(f"timidity failed on {config} (exit {result.returncode}): "
                                f"{result.stderr.strip()[-300:]}")
        audio, rate = soundfile.read(str(wav), dtype="float32")
    if rate != sample_rate:
        raise TimidityError(f"timidity wrote {rate} Hz, asked for {sample_rate} Hz")
    out = np.zeros(n_samples, np.float32)
    usable = min(n_samples, audio.shape[0])
    out[:usable] = audio[:usable]
    return out
