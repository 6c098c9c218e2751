"""The recorded engine: excerpts of real recordings (files written here, and a Debian
collection when installed) as a song's accompaniment; determinism, the collection in
splits.json, missing and silent recordings."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cli.main import main as cli_main
from tinysep.data import flite_singing, recordings
from tinysep.data.audio_io import AUDIO_SUFFIXES, resample
from tinysep.data.engines import EngineUnavailable, SongPlan, check_engines, plan_song, render_stems
from tinysep.data.loaders import find_clips
from tinysep.data.synth import SAMPLE_RATE, render_corpus_song, write_corpus
from tinysep.training.data import corpus_record

SEED, SECONDS = 5, 4.0
FILE_RATE = 44100


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)))


def _recording(path: Path, f0: float, seconds: float = 12.0, level: float = 0.3) -> np.ndarray:
    """A stereo 44.1 kHz 'recording': a chord that swells and a noise burst each second."""
    t = np.arange(int(seconds * FILE_RATE)) / FILE_RATE
    chord = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in (1, 1.5, 2, 3))
    bursts = np.random.default_rng(int(f0)).normal(size=t.size) * (np.mod(t, 1.0) < 0.05)
    mono = level * (chord / 2.5 * (0.6 + 0.4 * np.sin(2 * np.pi * 0.3 * t)) + 0.3 * bursts)
    stereo = np.stack([mono, 0.8 * mono], axis=1).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, stereo, FILE_RATE, subtype="VORBIS" if path.suffix == ".ogg" else "PCM_16")
    return stereo


@pytest.fixture()
def band(tmp_path) -> Path:
    """A user's folder of two instrumental recordings (one FLAC, one WAV in a sub-folder)."""
    folder = tmp_path / "band"
    _recording(folder / "one.flac", 220.0)
    _recording(folder / "live" / "two.wav", 330.0)
    (folder / "notes.txt").write_text("not audio")
    return folder


def test_a_recorded_song_plays_an_excerpt_of_one_recording_as_its_other_stem(band):
    plan = SongPlan(0, "additive", "recorded", None, "x", recording=str(band))
    song = render_stems(SEED, plan, SECONDS, SAMPLE_RATE)
    n = int(SECONDS * SAMPLE_RATE)
    assert _rms(song.stems["drums"]) == 0 and _rms(song.stems["bass"]) == 0
    assert song.stems["other"].shape == (n,) and _rms(song.stems["other"]) > 1e-3
    assert _rms(song.stems["vocals"]) > 1e-3
    assert song.info["recording_file"] in ("one.flac", "live/two.wav")
    # the stem is the named file from the named second, resampled to 16 kHz and scaled
    data, rate = sf.read(band / song.info["recording_file"], dtype="float32")
    start = int(round(song.info["recording_start_seconds"] * rate))
    expected = resample(data[start:start + int(SECONDS * rate) + 1].mean(axis=1), rate,
                        SAMPLE_RATE)[:n]
    other = song.stems["other"]
    assert np.corrcoef(expected[100:-100], other[100:-100])[0, 1] > 0.999
    assert np.allclose(song.accompaniment, other, atol=1e-6)


def test_the_same_arguments_write_the_same_bytes_and_name_each_songs_collection(tmp_path,
                                                                                  band):
    kwargs = dict(songs=6, seconds=6.0, seed=2, progress=False, engines="additive,recorded",
                  recordings=f"{band},{band}")
    write_corpus(tmp_path / "a", workers=1, **kwargs)
    write_corpus(tmp_path / "b", workers=2, **kwargs)
    files_a = {p.relative_to(tmp_path / "a"): p.read_bytes()
               for p in sorted((tmp_path / "a").rglob("*")) if p.is_file()}
    files_b = {p.relative_to(tmp_path / "b"): p.read_bytes()
               for p in sorted((tmp_path / "b").rglob("*")) if p.is_file()}
    assert files_a == files_b
    meta = json.loads((tmp_path / "a" / "splits.json").read_text())
    assert meta["parameters"]["recordings"] == [str(band)]  # repeats dropped
    recorded = [s for s in meta["songs"].values() if s["engines"]["accompaniment"] == "recorded"]
    others = [s for s in meta["songs"].values() if s["engines"]["accompaniment"] != "recorded"]
    assert recorded and others
    assert all(s["engines"]["recording"] == str(band)
               and s["recording_file"] in ("one.flac", "live/two.wav") for s in recorded)
    assert all("recording" not in s["engines"] for s in others)
    record = corpus_record(tmp_path / "a", "train")
    assert record["engines"]["recording"] == [str(band)]


def test_songs_draw_their_collection_and_the_rest_of_the_plan_stays(band, tmp_path):
    other = tmp_path / "other"
    _recording(other / "three.ogg", 250.0)
    engines = ("additive", "recorded")
    plans = [plan_song(7, i, engines, (), collections=(str(band), str(other)))
             for i in range(40)]
    drawn = {p.recording for p in plans if p.accompaniment_engine == "recorded"}
    assert drawn == {str(band), str(other)}
    assert all(p.recording is None for p in plans if p.accompaniment_engine == "additive")
    alone = [plan_song(7, i, engines, (), collections=(str(band),)) for i in range(40)]
    assert [(p.vocal_engine, p.accompaniment_engine, p.singer) for p in plans] == \
        [(p.vocal_engine, p.accompaniment_engine, p.singer) for p in alone]


def test_silent_or_short_recordings_skip_their_songs_and_count_them(tmp_path, band):
    quiet = tmp_path / "quiet"
    _recording(quiet / "fade.wav", 200.0, level=1e-4)
    _recording(quiet / "short.wav", 200.0, seconds=2.0)
    plan = SongPlan(0, "additive", "recorded", None, "x", recording=str(quiet))
    stems, info = render_corpus_song(SEED, plan, SECONDS, production=True)
    assert stems is None and "recorded engine failed" in info["skipped"]
    assert "no audible excerpt" in info["skipped"]
    summary = write_corpus(tmp_path / "corpus", songs=8, seconds=6.0, seed=1, progress=False,
                           engines="additive,recorded", recordings=str(quiet))
    meta = json.loads((tmp_path / "corpus" / "splits.json").read_text())
    recorded = {sid for sid, s in meta["songs"].items()
                if s["engines"]["accompaniment"] == "recorded"}
    assert recorded and set(summary.skipped) == recorded == set(meta["skipped"])
    assert len(recorded) < 8
    written = {p.stem.rsplit("_", 1)[0] for p in (tmp_path / "corpus" / "Wavfile").glob("*.wav")}
    assert written and not written & recorded
    assert not {c["song"] for c in meta["clips"].values()} & recorded


def test_missing_recordings_name_the_folder_or_the_package(tmp_path, monkeypatch):
    with pytest.raises(EngineUnavailable, match=r"folder .*nowhere does not exist"):
        check_engines(("additive", "recorded"), (), collections=(str(tmp_path / "nowhere"),))
    (tmp_path / "empty").mkdir()
    with pytest.raises(EngineUnavailable, match="holds no audio files"):
        check_engines(("additive", "recorded"), (), collections=(str(tmp_path / "empty"),))
    monkeypatch.setitem(recordings.COLLECTIONS, "xmoto",
                        (str(tmp_path / "uninstalled"), "xmoto-data"))
    with pytest.raises(EngineUnavailable, match="install the Debian package xmoto-data"):
        check_engines(("additive", "recorded"), (), collections=("xmoto",))
    check_engines(("additive",), (), collections=("xmoto",))  # the engine does not play


def test_the_command_line_refuses_bad_recordings(tmp_path, capsys):
    cases = [
        (["--engines", "additive,recorded", "--recordings", "nope"], "unknown recordings 'nope'"),
        (["--engines", "additive", "--recordings", "xmoto"],
         "play only with the recorded engine"),
        (["--engines", "additive,recorded", "--recordings", str(tmp_path / "gone")],
         "engine recorded: recordings"),
    ]
    for extra, message in cases:
        assert cli_main(["synth", "--out", str(tmp_path / "out"), "--songs", "2",
                         "--seconds", "5", *extra]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "out").exists()


@pytest.mark.skipif(recordings.missing_collection("lincity") is not None,
                    reason="make system-deps installs the lincity-ng-data soundtrack")
def test_a_debian_collection_plays():
    plan = SongPlan(3, "additive", "recorded", None, "x", recording="lincity")
    stems, info = render_corpus_song(SEED, plan, SECONDS, production=True)
    assert stems is not None, info
    assert info["recording_file"].endswith(".ogg")
    assert _rms(stems["other"]) > 1e-3


def test_a_damaged_recording_is_passed_over_and_named_when_nothing_else_plays(tmp_path, band,
                                                                             monkeypatch):
    (band / "broken.ogg").write_bytes(b"OggS" + bytes(range(256)) * 8)
    opened = []
    frames = recordings._frames
    monkeypatch.setattr(recordings, "_frames", lambda path: opened.append(path) or frames(path))
    for index in range(6):  # songs whose draws meet the damaged file still play
        plan = SongPlan(index, "additive", "recorded", None, "x", recording=str(band))
        stems, info = render_corpus_song(SEED, plan, SECONDS, production=False)
        assert stems is not None, info
        assert info["recording_file"] in ("one.flac", "live/two.wav")
    assert str(band / "broken.ogg") in opened
    only = tmp_path / "only"
    only.mkdir()
    (only / "broken.ogg").write_bytes(b"OggS" + bytes(range(256)) * 8)
    plan = SongPlan(0, "additive", "recorded", None, "x", recording=str(only))
    stems, info = render_corpus_song(SEED, plan, SECONDS, production=False)
    assert stems is None
    assert "unreadable" in info["skipped"] and "broken.ogg: cannot read it" in info["skipped"]


def test_folders_are_named_by_their_absolute_path(tmp_path, monkeypatch, band):
    monkeypatch.chdir(band.parent)
    assert recordings.parse_collections("./band, xmoto,band/") == (str(band), "xmoto")


def test_four_stem_work_leaves_out_songs_whose_accompaniment_is_a_recording(tmp_path, band):
    write_corpus(tmp_path / "mixed", songs=8, seconds=6.0, seed=2, progress=False,
                 engines="additive,recorded", recordings=str(band), stems=True)
    meta = json.loads((tmp_path / "mixed" / "splits.json").read_text())
    recorded = {c for c, m in meta["clips"].items()
                if m["engines"]["accompaniment"] == "recorded"}
    two = find_clips(tmp_path / "mixed", split="all")
    assert recorded and {c.name for c in two} == set(meta["clips"])
    with pytest.warns(UserWarning, match=rf"{len(recorded)} of {len(two)} clips .* left out"):
        four = find_clips(tmp_path / "mixed", split="all",
                          sources=("vocals", "drums", "bass", "other"))
    assert {c.name for c in four} == set(meta["clips"]) - recorded


@pytest.mark.skipif(flite_singing.missing_tools(flite_singing.DEFAULT_FLITE_VOICES) is not None,
                    reason="make system-deps installs Flite")
def test_four_stem_work_names_a_split_that_only_plays_recordings(tmp_path, band):
    write_corpus(tmp_path / "rec", songs=3, seconds=6.0, seed=2, progress=False,
                 engines="flite,recorded", recordings=str(band), stems=True)
    assert len(find_clips(tmp_path / "rec", split="all")) > 0
    with pytest.raises(ValueError, match=r"rec: every clip of the all split plays a recording"):
        find_clips(tmp_path / "rec", split="all", sources=("vocals", "drums", "bass", "other"))


def test_a_rewrite_notices_changed_recordings_and_the_corpus_keeps_apart(tmp_path, band):
    kwargs = dict(songs=4, seconds=6.0, seed=2, progress=False, engines="additive,recorded",
                  recordings=str(band))
    write_corpus(tmp_path / "corpus", **kwargs)
    before = (tmp_path / "corpus" / "splits.json").read_bytes()
    write_corpus(tmp_path / "corpus", **kwargs)  # the same files: rewritten alike
    assert (tmp_path / "corpus" / "splits.json").read_bytes() == before
    recordings.collection_files.cache_clear()
    _recording(band / "three.wav", 275.0)
    with pytest.raises(ValueError, match=r"other parameters \(recording_files .*2 files.*3 files"):
        write_corpus(tmp_path / "corpus", **kwargs)
    assert (tmp_path / "corpus" / "splits.json").read_bytes() == before
    for out in (band / "corpus", band.parent):  # inside the recordings, or holding them
        with pytest.raises(ValueError, match="(holds|lies inside) the corpus folder .*; keep "
                           "the recordings apart"):
            write_corpus(out, **kwargs)
    assert not (band / "corpus").exists()


def test_linked_folders_are_followed_once(tmp_path, band):
    links = tmp_path / "links"
    links.mkdir()
    (links / "band").symlink_to(band, target_is_directory=True)
    (links / "loop").symlink_to(links, target_is_directory=True)
    files = recordings.collection_files(str(links))
    assert [os.path.relpath(f, links) for f in files] == ["band/live/two.wav", "band/one.flac"]
    assert recordings.missing_collection(str(band / "one.flac")).endswith(
        "is a file, not a folder; give a folder holding " + ", ".join(AUDIO_SUFFIXES) + " files")
