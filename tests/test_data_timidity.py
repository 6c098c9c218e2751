"""The freepats patch set played by TiMidity++ (the real program and patches): which programs
it has, the MIDI file it is given, notes sounding where they are written, the same samples
for the same notes, and a missing program or tool named."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tinysep.data import engines as engines_mod
from tinysep.data import soundfont, timidity
from tinysep.data.soundfont import MidiNote

CONFIG = str(soundfont.font_path("freepats"))
RATE = 16000
pytestmark = pytest.mark.skipif(
    shutil.which("timidity") is None or not soundfont.font_path("freepats").is_file(),
    reason="make system-deps installs timidity and freepats")


def _notes() -> list[MidiNote]:
    # two half-second notes with a silent second between them
    return [MidiNote(0.5, 0.5, 60, 100), MidiNote(2.0, 0.5, 67, 100)]


def test_the_patch_set_lacks_some_programs_and_the_family_stands_in():
    have = timidity.programs(CONFIG)
    assert 0 in have and 3 not in have and 40 in have and len(have) < 128
    assert timidity.nearest_program(CONFIG, 0) == 0
    assert timidity.nearest_program(CONFIG, 3) == 2  # 2 and 4 are as near: the lower one
    assert timidity.nearest_program(CONFIG, 41) // 8 == 41 // 8  # a string, not a piano
    for program in range(128):
        assert timidity.nearest_program(CONFIG, program) in have


def test_the_midi_file_holds_the_notes_in_time_order():
    notes = [MidiNote(1.0, 0.25, 64, 90), MidiNote(0.0, 0.5, 60, 200), MidiNote(0.2, 1, 300, 9)]
    data = timidity.midi_file(5, notes, 0, RATE * 2, RATE)
    assert data[:4] == b"MThd" and data[14:18] == b"MTrk"
    assert int.from_bytes(data[12:14], "big") == 480  # ticks per quarter at 120 bpm
    track = data[22:]
    assert bytes([0xC0, 5]) in track
    assert track.count(bytes([0x90, 60, 127])) == 1  # velocity clipped to 127
    assert bytes([0x90, 64, 90]) in track and track.index(b"\x90\x3c") < track.index(b"\x90\x40")
    assert 300 % 256 not in (track[i + 1] for i in range(len(track) - 1) if track[i] == 0x90)
    assert track.endswith(b"\xff\x2f\x00")


def test_notes_sound_where_they_are_written_and_nowhere_else():
    audio = timidity.render_notes(CONFIG, 0, _notes(), 3 * RATE, RATE, channel=0)
    assert audio.dtype == np.float32 and audio.shape == (3 * RATE,)
    rms = [float(np.sqrt(np.mean(audio[int(a * RATE):int(b * RATE)] ** 2)))
           for a, b in ((0.0, 0.45), (0.55, 0.9), (1.6, 1.95), (2.05, 2.4))]
    assert rms[0] < 1e-4 and rms[2] < 0.05 * rms[1]  # before the first note, between notes
    assert rms[1] > 0.01 and rms[3] > 0.01
    assert np.abs(audio).max() < 1.0  # headroom: nothing clipped
    spectrum = np.abs(np.fft.rfft(audio[int(0.55 * RATE):int(0.95 * RATE)]))
    peak = np.fft.rfftfreq(int(0.4 * RATE), 1 / RATE)[np.argmax(spectrum)]
    assert min(abs(peak - 261.6 * k) for k in (1, 2, 3)) < 15  # middle C or a harmonic


def test_the_same_notes_give_the_same_samples_and_drums_play_the_kit():
    first = soundfont.render_notes("freepats", 40, _notes(), 3 * RATE, RATE)
    again = soundfont.render_notes("freepats", 40, _notes(), 3 * RATE, RATE)
    np.testing.assert_array_equal(first, again)
    piano = soundfont.render_notes("freepats", 0, _notes(), 3 * RATE, RATE)
    assert abs(np.corrcoef(first, piano)[0, 1]) < 0.5  # the violin is not the piano
    kick = soundfont.render_notes("freepats", 0, [MidiNote(0.1, 0.1, 36, 110)], RATE, RATE,
                                  drums=True)
    assert np.sqrt(np.mean(kick[: RATE // 2] ** 2)) > 0.005


def test_a_missing_timidity_is_named_with_its_package(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(soundfont.FontError, match="timidity program is missing.*timidity"):
        soundfont.render_notes("freepats", 0, _notes(), RATE, RATE)
    with pytest.raises(engines_mod.EngineUnavailable,
                       match=r"soundfont.*freepats.*timidity.*timidity freepats"):
        engines_mod.check_engines(("additive", "soundfont"), ("freepats",))


def test_a_configuration_without_programs_is_refused(tmp_path):
    empty = tmp_path / "empty.cfg"
    empty.write_text("# nothing\ndrumset 0\n 36 kick.pat\n")
    with pytest.raises(timidity.TimidityError, match="empty.cfg: no program in bank 0"):
        timidity.programs(str(empty))
    with pytest.raises(timidity.TimidityError, match="no such file"):
        timidity.programs(str(tmp_path / "gone.cfg"))
