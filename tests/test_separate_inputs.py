"""`tinysep separate` with hostile inputs: song names, folders to replace, times, summaries,
ports and paths are checked, named in one line, and no user file is lost."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from board_bundle import make_bundle

from cli.common import CliError
from cli.main import build_parser, main
from tinysep.data.audio_io import read_audio
from tinysep.stems import probe, sample_range, separate_file, song_name


def _write_song(path: Path, seconds: float = 1.0, rate: int = 16000, seed: int = 0) -> Path:
    """A short mono song (a tone and noise) at ``path``."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    audio = 0.2 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), audio.astype(np.float32), rate, format="WAV")
    return path


def _summary(out: Path) -> dict:
    return json.loads((out / "separate.json").read_text())


def _song_names(report: dict) -> list[str]:
    return sorted(Path(entry["input"]).stem for entry in report["songs"])


@pytest.fixture(scope="module")
def models():
    return make_bundle(float_model=True)


@pytest.fixture
def run(models):
    """``main(["separate", ...])`` on the small float model without progress output."""
    _, model = models

    def separate(*argv: str | Path) -> int:
        return main(["separate", *map(str, argv), "--model", str(model), "--no-progress"])

    return separate


@pytest.mark.parametrize(("file_name", "name"), [("...wav", ".."), ("..wav", "."),
                                                 (".song.partial.wav", ".song.partial")])
def test_song_names_that_are_no_plain_folder_are_refused(tmp_path, file_name, name):
    with pytest.raises(ValueError, match=f"its song name '{name}'"):
        song_name(tmp_path / file_name)
    assert song_name(tmp_path / ".a.b.wav") == ".a.b"


def test_songs_named_dot_dot_or_like_the_summary_are_skipped_and_nothing_else_goes(
        run, tmp_path, capsys):
    songs = tmp_path / "songs"
    for name in ("...wav", "..wav", "separate.json.wav", "good.wav"):
        _write_song(songs / name)
    parent = tmp_path / "parent"
    out = parent / "out"
    (out / "old").mkdir(parents=True)
    (out / "old" / "vocals.wav").write_bytes(b"earlier stems")
    (parent / "keep.txt").write_text("mine")
    assert run(songs, "--out", out, "--overwrite") == 1
    printed = capsys.readouterr().out
    for name, song in (("...wav", ".."), ("..wav", "."), ("separate.json.wav", "separate.json")):
        assert f"{songs / name}: skipped: {songs / name}: its song name '{song}'" in printed
    assert (parent / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in parent.iterdir()) == ["keep.txt", "out"]
    assert sorted(p.name for p in out.iterdir()) == ["good", "old", "separate.json"]
    assert (out / "old" / "vocals.wav").read_bytes() == b"earlier stems"
    report = _summary(out)
    assert _song_names(report) == ["good"]
    assert sorted(Path(e["input"]).name for e in report["failed"]) == [
        "...wav", "..wav", "separate.json.wav"]


def test_an_input_inside_the_folder_it_would_replace_is_kept(run, tmp_path, capsys):
    music = tmp_path / "music"
    song = _write_song(music / "ok" / "ok.wav")
    original = song.read_bytes()
    (music / "ok" / "notes.txt").write_text("lyrics")
    hidden = _write_song(music / ".hid.partial" / "hid.wav", seed=1)
    assert run(song, hidden, "--out", music, "--overwrite") == 1
    printed = capsys.readouterr().out
    assert f"{song}: the input lies inside {music / 'ok'}, which separating it would" in printed
    assert f"{hidden}: the input lies inside {music / '.hid.partial'}" in printed
    assert song.read_bytes() == original and hidden.is_file()
    assert (music / "ok" / "notes.txt").read_text() == "lyrics"
    assert sorted(p.name for p in (music / "ok").iterdir()) == ["notes.txt", "ok.wav"]


def test_a_song_folder_that_is_a_link_or_a_file_is_not_replaced(run, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "photo.jpg").write_bytes(b"jpeg")
    out = tmp_path / "out"
    out.mkdir()
    (out / "linked").symlink_to(elsewhere, target_is_directory=True)
    (out / "plain").write_text("a file")
    linked, plain = _write_song(tmp_path / "linked.wav"), _write_song(tmp_path / "plain.wav")
    assert run(linked, plain, "--out", out, "--overwrite") == 1
    printed = capsys.readouterr().out
    assert f"{out / 'linked'} exists and is not a stems folder" in printed
    assert f"{out / 'plain'} exists and is not a stems folder" in printed
    assert sorted(p.name for p in elsewhere.iterdir()) == ["photo.jpg"]
    assert (out / "plain").read_text() == "a file"


@pytest.mark.parametrize(("option", "value"), [
    ("--start", "1e308"), ("--start", "-1"), ("--start", "90000"), ("--duration", "1e308"),
    ("--duration", "0"), ("--duration", "-2"),
])
def test_start_and_duration_are_checked_before_any_work(run, tmp_path, capsys, option, value):
    song = _write_song(tmp_path / "song.wav")
    out = tmp_path / "out"
    assert run(song, "--out", out, option, value) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tinysep separate: error: {option} must be a number of seconds")
    assert "Traceback" not in err and not out.exists()


@pytest.mark.parametrize(("option", "value"), [
    ("--start", "nan"), ("--start", "inf"), ("--duration", "nan"), ("--duration", "inf"),
])
def test_start_and_duration_that_are_no_number_are_refused_at_parsing(run, tmp_path, capsys,
                                                                      option, value):
    song = _write_song(tmp_path / "song.wav")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        run(song, "--out", out, option, value)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: expected a finite number, got '{value}'" in err
    assert "Traceback" not in err and not out.exists()


def test_sample_range_takes_huge_times_without_overflow(tmp_path):
    info = probe(_write_song(tmp_path / "song.wav", seconds=1.0, rate=44100))
    with pytest.raises(ValueError, match="start 1e\\+308 s is past its end"):
        sample_range(info, start=1e308)
    assert sample_range(info, start=0.5, duration=1e308) == (22050, 44100)
    assert sample_range(info, start=0.5, duration=0.25) == (22050, 33075)


def test_the_summary_keeps_songs_separated_into_the_folder_earlier(run, tmp_path, capsys):
    first, second = _write_song(tmp_path / "a.wav"), _write_song(tmp_path / "b.wav", seed=1)
    out = tmp_path / "out"
    assert run(first, "--out", out) == 0
    assert run(second, "--out", out) == 0
    assert _song_names(_summary(out)) == ["a", "b"]
    # a refused run separates nothing and keeps both entries
    assert run(first, "--out", out) == 1
    report = _summary(out)
    assert _song_names(report) == ["a", "b"]
    assert [Path(e["input"]).name for e in report["failed"]] == ["a.wav"]
    # separating a song again replaces its entry and clears its failure
    stamp = report["songs"][0]["wall_seconds"]
    assert run(first, "--out", out, "--overwrite", "--duration", "0.5") == 0
    report = _summary(out)
    assert _song_names(report) == ["a", "b"] and report["failed"] == []
    seconds = {Path(e["input"]).stem: e["seconds"] for e in report["songs"]}
    assert seconds == {"a": 0.5, "b": 1.0} and report["songs"][0]["wall_seconds"] != stamp
    capsys.readouterr()


@pytest.mark.parametrize("contents", ["{not json", '{"command": "evaluate", "songs": []}'])
def test_a_summary_file_that_is_not_ours_is_left_as_it_is(run, tmp_path, capsys, contents):
    out = tmp_path / "out"
    out.mkdir()
    (out / "separate.json").write_text(contents)
    assert run(_write_song(tmp_path / "song.wav"), "--out", out) == 1
    captured = capsys.readouterr()
    assert f"warning: {out / 'separate.json'} is not" in captured.err
    assert "left as it is and this run's summary is not written" in captured.err
    assert (out / "separate.json").read_text() == contents
    assert (out / "song" / "vocals.wav").is_file()


def test_stems_with_nan_or_infinity_are_not_written(run, tmp_path, capsys):
    song = _write_song(tmp_path / "song.wav")
    out = tmp_path / "out"
    assert run(song, "--out", out) == 0
    earlier = (out / "song" / "vocals.wav").read_bytes()
    huge = np.full(16000, 3e38, np.float32)
    huge[1::2] = -3e38  # finite samples whose spectrum overflows float32
    soundfile.write(str(song), huge, 16000, subtype="FLOAT")
    assert run(song, "--out", out, "--overwrite") == 1
    captured = capsys.readouterr()
    assert f"{song}: the vocals estimate is NaN or infinite at 0.000 s" in captured.out
    assert "RuntimeWarning" not in captured.err
    assert (out / "song" / "vocals.wav").read_bytes() == earlier
    assert sorted(p.name for p in out.iterdir()) == ["separate.json", "song"]
    assert _song_names(_summary(out)) == ["song"]


def test_a_separator_giving_nan_leaves_no_stems(tmp_path):
    song = _write_song(tmp_path / "song.wav", seconds=2.0)

    def broken(audio):
        estimate = np.zeros_like(audio)
        estimate[20000:] = np.nan
        return {"vocals": estimate, "accompaniment": np.zeros_like(audio)}

    with pytest.raises(ValueError, match="song.wav: the vocals estimate is NaN or infinite "
                                         "at 1.250 s"):
        separate_file(song, tmp_path / "out", broken, ["vocals", "accompaniment"],
                      progress=False)
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("port", ["/dev/null", "socket://127.0.0.1:1"])
def test_a_port_that_cannot_be_opened_is_a_one_line_error(models, tmp_path, capsys, port):
    bundle, _ = models
    song = _write_song(tmp_path / "song.wav")
    out = tmp_path / "out"
    argv = ["separate", str(song), "--out", str(out), "--model", str(bundle), "--port", port]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tinysep separate: error: cannot open serial port {port}: ")
    assert err.count("\n") == 1 and not out.exists()
    args = build_parser().parse_args(argv)
    with pytest.raises(CliError, match=f"cannot open serial port {port}"):
        args._module.run(args)


@pytest.mark.parametrize("argv", [["--out", "", "song.wav"], ["--out", "out", ""]])
def test_empty_paths_are_refused(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.chdir(tmp_path)
    _write_song(tmp_path / "song.wav")
    with pytest.raises(SystemExit) as stop:
        main(["separate", *argv, "--no-progress"])
    assert stop.value.code == 2
    option = "--out" if argv[1] == "" else "INPUT"
    assert f"argument {option}: an empty path" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.wav"]


def test_overwrite_replaces_only_stems_and_keeps_a_users_files(run, tmp_path, capsys):
    song = _write_song(tmp_path / "song.wav")
    out = tmp_path / "out"
    assert run(song, "--out", out) == 0
    earlier = (out / "song" / "vocals.wav").read_bytes()
    (out / "song" / "notes.txt").write_text("mine")
    assert run(song, "--out", out, "--overwrite", "--duration", "0.5") == 1
    assert "holds notes.txt, which separating does not write" in capsys.readouterr().out
    assert (out / "song" / "notes.txt").read_text() == "mine"
    assert (out / "song" / "vocals.wav").read_bytes() == earlier
    (out / "song" / "notes.txt").unlink()
    (out / "song" / "drums.wav").write_bytes(earlier)  # stems of a four-stem model are stems
    assert run(song, "--out", out, "--overwrite", "--duration", "0.5") == 0
    assert soundfile.info(str(out / "song" / "vocals.wav")).frames == 8000
    assert sorted(p.name for p in (out / "song").iterdir()) == ["accompaniment.wav",
                                                                 "vocals.wav"]


def test_an_interrupted_run_lists_the_songs_it_finished(tmp_path, capsys):
    from cli.separate import _separate_all

    songs = [_write_song(tmp_path / f"s{i}.wav", seed=i) for i in range(3)]
    calls = []

    def separator(audio):
        calls.append(audio.size)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return {"vocals": audio / 2, "accompaniment": audio / 2}

    args = build_parser().parse_args(["separate", *map(str, songs), "--out",
                                      str(tmp_path / "out"), "--no-progress"])
    with pytest.raises(KeyboardInterrupt):
        _separate_all(args, songs, separator, ["vocals", "accompaniment"], "halves")
    report = _summary(tmp_path / "out")
    assert _song_names(report) == ["s0"] and report["failed"] == []
    assert report["interrupted"] == {"input": str(songs[1]), "separated": 1, "failed": 0,
                                     "not_started": [str(songs[2])]}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["s0", "separate.json"]
    assert "interrupted while separating" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".mp3", ".wav", ".flac"])
def test_a_broken_file_is_one_error_and_no_decoder_noise(tmp_path, capfd, suffix):
    broken = tmp_path / f"not-audio{suffix}"
    broken.write_text("these bytes are text, not sound\n" * 20)
    with pytest.raises(ValueError, match=f"not-audio\\{suffix}: not a readable audio file"):
        probe(broken)
    with pytest.raises(ValueError, match=f"not-audio\\{suffix}: cannot read audio"):
        read_audio(broken)
    assert capfd.readouterr().err == ""


def test_a_folder_whose_songs_are_in_subfolders_says_so(tmp_path):
    from cli.separate import audio_files

    for name in ("live", "studio"):
        _write_song(tmp_path / "album" / name / "song.wav")
    with pytest.raises(ValueError, match=r"album: a folder with no audio files .* directly in "
                                         r"it; its subfolders \(live, studio\) are not searched"):
        audio_files([tmp_path / "album"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty: a folder with no audio files .* directly in "
                                         r"it$"):
        audio_files([tmp_path / "empty"])
    assert audio_files([tmp_path / "album" / "live"]) == [tmp_path / "album/live/song.wav"]


def test_a_damaged_flac_is_skipped_and_the_songs_after_it_are_separated(run, tmp_path, capsys):
    songs = tmp_path / "songs"
    rng = np.random.default_rng(3)
    audio = (0.3 * rng.standard_normal(16000 * 40)).astype(np.float32)
    whole = tmp_path / "whole.flac"
    soundfile.write(str(whole), audio, 16000, format="FLAC")
    data = whole.read_bytes()
    songs.mkdir()
    (songs / "a_cut.flac").write_bytes(data[: len(data) // 2])  # the header still says 40 s
    _write_song(songs / "b_fine.wav")
    out = tmp_path / "out"
    assert run(songs, "--out", out) == 1
    printed = capsys.readouterr().out
    assert f"{songs / 'a_cut.flac'}: skipped: {songs / 'a_cut.flac'}: " in printed
    assert "cannot decode the audio after" in printed and "damaged or cut short" in printed
    assert (out / "b_fine" / "vocals.wav").is_file() and not (out / "a_cut").exists()
    assert [Path(e["input"]).name for e in _summary(out)["failed"]] == ["a_cut.flac"]
    assert not list(out.glob(".*partial*"))


def test_float_input_keeps_float_stems_that_add_up_beyond_full_scale(run, tmp_path):
    t = np.arange(16000) / 16000
    loud = (1.6 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)  # a master above 0 dBFS
    song = tmp_path / "loud.wav"
    soundfile.write(str(song), loud, 16000, subtype="FLOAT")
    assert run(song, "--out", tmp_path / "out") == 0
    stems = {s: soundfile.read(str(tmp_path / "out" / "loud" / f"{s}.wav"), dtype="float32")
             for s in ("vocals", "accompaniment")}
    assert {soundfile.info(str(tmp_path / "out" / "loud" / f"{s}.wav")).subtype
            for s in stems} == {"FLOAT"}
    total = stems["vocals"][0] + stems["accompaniment"][0]
    assert np.abs(total).max() > 1.2  # nothing clipped at full scale
    assert np.abs(total - loud).max() < 1e-4
    assert _summary(tmp_path / "out")["songs"][0]["clipped_samples"] == {
        "vocals": 0, "accompaniment": 0}
    pcm = tmp_path / "pcm.wav"
    soundfile.write(str(pcm), loud / 2, 16000, subtype="PCM_24")
    assert run(pcm, "--out", tmp_path / "out") == 0
    assert soundfile.info(str(tmp_path / "out" / "pcm" / "vocals.wav")).subtype == "PCM_24"


def test_the_same_file_given_twice_is_separated_once(run, tmp_path, capsys):
    song = _write_song(tmp_path / "in" / "song.wav")
    out = tmp_path / "out"
    assert run(song, tmp_path / "in", song, "--out", out) == 0
    assert "separating 1 file(s)" in capsys.readouterr().out
    assert _song_names(_summary(out)) == ["song"]
