"""Loaders for the synthetic corpus, MIR-1K and MUSDB18-HQ layouts, and their error messages."""

import io
import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tinysep.data.audio_io import read_audio, read_mono, resample, write_audio
from tinysep.data.clip import Clip
from tinysep.data.loaders import (
    ClipSource,
    detect_dataset,
    find_clips,
    hash_split,
    load_clips,
    load_split,
    song_of,
)
from tinysep.data.synth import write_corpus

MUSDB_RATE = 44_100


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("loaders") / "synth"
    write_corpus(root, songs=5, seconds=6.0, seed=11, progress=False)
    return root


def _write_mir1k(root: Path, songs: int = 10, clips: int = 2, rate: int = 16_000) -> dict:
    """A MIR-1K-like folder of random stereo clips; returns name -> (left, right) as written."""
    rng = np.random.default_rng(5)
    (root / "Wavfile").mkdir(parents=True)
    written = {}
    for s in range(songs):
        for c in range(1, clips + 1):
            name = f"sing{s % 3}_{s + 1}_{c:02d}"
            stereo = rng.uniform(-0.4, 0.4, size=(rate // 2, 2)).astype(np.float32)
            sf.write(str(root / "Wavfile" / f"{name}.wav"), stereo, rate, subtype="PCM_16")
            written[name] = sf.read(str(root / "Wavfile" / f"{name}.wav"), dtype="float32")[0]
    return written


def _write_musdb(root: Path, tracks: dict[str, list[str]], seconds: float = 1.0) -> None:
    """MUSDB18-HQ-like stems at 44.1 kHz stereo: vocals 440 Hz, drums+bass+other = 3 tones."""
    n = int(seconds * MUSDB_RATE)
    t = np.arange(n) / MUSDB_RATE
    tones = {"vocals": 440.0, "drums": 150.0, "bass": 60.0, "other": 1000.0}
    for sub, names in tracks.items():
        for k, name in enumerate(names):
            folder = root / sub / name
            folder.mkdir(parents=True)
            stems = {}
            for stem, freq in tones.items():
                left = 0.2 * np.sin(2 * np.pi * freq * t)
                right = 0.1 * np.sin(2 * np.pi * freq * t + k)
                stems[stem] = np.stack([left, right], axis=1)
            stems["mixture"] = sum(stems.values())
            for stem, audio in stems.items():
                sf.write(str(folder / f"{stem}.wav"), audio, MUSDB_RATE, subtype="FLOAT")


# --- the synthetic corpus -------------------------------------------------------------


def test_synth_corpus_is_detected_and_split_as_written(synth_root):
    assert detect_dataset(synth_root) == "synth"
    meta = json.loads((synth_root / "splits.json").read_text())
    for split in ("train", "valid", "test"):
        sources = find_clips(synth_root, "auto", split)
        assert sorted(s.name for s in sources) == sorted(meta["splits"][split])
        assert all(s.dataset == "synth" for s in sources)
    everything = find_clips(synth_root, "synth", "all")
    assert len(everything) == len(meta["clips"])
    assert {s.song for s in everything} == set(meta["songs"])


def test_clip_source_pickles_and_loads_left_accompaniment_right_vocals(synth_root):
    source = find_clips(synth_root, split="test")[0]
    copy = pickle.loads(pickle.dumps(source))
    assert copy == source
    clip = copy.load()
    assert isinstance(clip, Clip)
    stereo, rate = sf.read(source.paths[0], dtype="float32")
    assert rate == clip.sample_rate == 16_000
    assert clip.mixture.dtype == clip.vocals.dtype == clip.accompaniment.dtype == np.float32
    np.testing.assert_array_equal(clip.accompaniment, stereo[:, 0])
    np.testing.assert_array_equal(clip.vocals, stereo[:, 1])
    np.testing.assert_allclose(clip.mixture, stereo[:, 0] + stereo[:, 1], atol=1e-7)
    assert clip.song == source.song == "_".join(source.name.split("_")[:2])


def test_load_split_holds_every_clip_in_memory(synth_root):
    clips = load_split(synth_root, split="train", progress=False)
    names = [s.name for s in find_clips(synth_root, split="train")]
    assert [c.name for c in clips] == names
    assert all(c.seconds >= 4.0 for c in clips)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_loading_reports_progress_as_plain_lines_or_a_bar(tmp_path):
    _write_mir1k(tmp_path / "m", songs=10, clips=2)
    found = find_clips(tmp_path / "m", split="train")
    assert len(found) >= 5
    log = io.StringIO()
    clips = load_clips(found, progress=True, stream=log)
    assert [c.name for c in clips] == [s.name for s in found]
    lines = log.getvalue().splitlines()
    assert 1 < len(lines) <= 11 and "\r" not in log.getvalue()  # a log file: a few lines
    assert lines[-1].startswith(f"loading clips: {len(found)}/{len(found)} clips (100 %")
    quiet = io.StringIO()
    load_clips(found, progress=False, stream=quiet)
    assert quiet.getvalue() == ""
    terminal = _Terminal()
    load_clips(found, progress=True, stream=terminal)
    assert "\r" in terminal.getvalue() and f"{len(found)}/{len(found)}" in terminal.getvalue()


def test_synth_requires_its_splits_file(tmp_path):
    _write_mir1k(tmp_path / "m", songs=2, clips=1)
    with pytest.raises(ValueError, match=r"no splits\.json in .*m: expected a tinysep"):
        find_clips(tmp_path / "m", "synth", "test")


def test_incomplete_corpus_and_missing_clip_are_reported(synth_root, tmp_path):
    root = tmp_path / "copy"
    (root / "Wavfile").mkdir(parents=True)
    meta = json.loads((synth_root / "splits.json").read_text())
    for p in (synth_root / "Wavfile").glob("*.wav"):
        (root / "Wavfile" / p.name).write_bytes(p.read_bytes())
    (root / "splits.json").write_text(json.dumps({**meta, "complete": False}))
    with pytest.raises(ValueError, match="incomplete"):
        find_clips(root, split="test")
    (root / "splits.json").write_text(json.dumps(meta))
    missing = meta["splits"]["test"][0]
    (root / "Wavfile" / f"{missing}.wav").unlink()
    with pytest.raises(FileNotFoundError, match=f"{missing}.wav: listed in"):
        find_clips(root, split="test")


# --- MIR-1K ---------------------------------------------------------------------------


def test_mir1k_split_by_song_from_a_stable_hash(tmp_path):
    written = _write_mir1k(tmp_path / "mir", songs=20, clips=3)
    assert detect_dataset(tmp_path / "mir") == "mir1k"
    splits = {s: find_clips(tmp_path / "mir", "mir1k", s) for s in ("train", "valid", "test")}
    songs = {s: {c.song for c in srcs} for s, srcs in splits.items()}
    assert [len(songs[s]) for s in ("train", "valid", "test")] == [14, 2, 4]
    assert songs["train"].isdisjoint(songs["test"]) and songs["valid"].isdisjoint(songs["test"])
    assert songs["train"].isdisjoint(songs["valid"])
    every = find_clips(tmp_path / "mir", "auto", "all")
    assert sorted(c.name for c in every) == sorted(written)
    assert sum(len(v) for v in splits.values()) == len(every)
    assert hash_split(sorted(songs["test"] | songs["train"] | songs["valid"])) == hash_split(
        reversed(sorted(songs["test"] | songs["train"] | songs["valid"])))


def test_mir1k_clip_is_left_plus_right(tmp_path):
    written = _write_mir1k(tmp_path / "mir", songs=3, clips=1)
    source = find_clips(tmp_path / "mir", "mir1k", "all")[0]
    clip = source.load()
    left, right = written[source.name][:, 0], written[source.name][:, 1]
    np.testing.assert_array_equal(clip.accompaniment, left)
    np.testing.assert_array_equal(clip.vocals, right)
    np.testing.assert_array_equal(clip.mixture, left + right)
    assert clip.song == song_of(source.name) == source.name.rsplit("_", 1)[0]


def test_mir1k_other_sample_rate_is_resampled(tmp_path):
    _write_mir1k(tmp_path / "mir", songs=1, clips=1, rate=22_050)
    clip = find_clips(tmp_path / "mir", "mir1k", "all")[0].load()
    assert clip.sample_rate == 16_000
    assert len(clip.mixture) == round(22_050 // 2 * 16_000 / 22_050)


def test_mir1k_mono_file_is_named(tmp_path):
    (tmp_path / "Wavfile").mkdir()
    sf.write(str(tmp_path / "Wavfile" / "a_1_01.wav"), np.zeros(1600), 16_000)
    source = find_clips(tmp_path, "mir1k", "all")[0]
    with pytest.raises(ValueError, match=r"a_1_01\.wav: expected 2 channels"):
        source.load()


def test_song_of_parses_mir1k_names():
    assert song_of("abjones_1_01") == "abjones_1"
    assert song_of("singer03_017_02") == "singer03_017"
    assert song_of("track") == "track"


# --- MUSDB18-HQ -----------------------------------------------------------------------


def test_musdb_resampled_to_16k_mono_with_accompaniment_the_sum_of_stems(tmp_path):
    root = tmp_path / "musdb"
    _write_musdb(root, {"train": ["A", "B", "C", "D"], "test": ["E", "F"]})
    assert detect_dataset(root) == "musdb"
    test = find_clips(root, "auto", "test")
    assert [s.name for s in test] == ["E", "F"]
    train, valid = find_clips(root, "musdb", "train"), find_clips(root, "musdb", "valid")
    assert len(valid) >= 1 and len(train) >= 1
    assert sorted(s.name for s in train + valid) == ["A", "B", "C", "D"]
    assert len(find_clips(root, "musdb", "all")) == 6

    source = test[1]
    clip = source.load()
    assert clip.sample_rate == 16_000 and clip.song == "F"
    assert len(clip.mixture) == len(clip.vocals) == len(clip.accompaniment) == 16_000
    stems = {Path(p).stem: read_mono(p) for p in source.paths}
    np.testing.assert_allclose(clip.accompaniment,
                               stems["drums"] + stems["bass"] + stems["other"], atol=1e-6)
    np.testing.assert_allclose(clip.mixture, clip.vocals + clip.accompaniment, atol=1e-5)
    # vocals: the mean of 0.2 sin(wt) and 0.1 sin(wt + 1) at 440 Hz, now sampled at 16 kHz
    t = np.arange(16_000) / 16_000
    expected = 0.5 * (0.2 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 440 * t + 1))
    middle = slice(1000, 15_000)  # away from the filter's edges
    np.testing.assert_allclose(clip.vocals[middle], expected[middle], atol=2e-3)


def test_musdb_missing_stem_names_the_track(tmp_path):
    root = tmp_path / "musdb"
    _write_musdb(root, {"train": ["A", "B"], "test": ["E"]})
    (root / "test" / "E" / "bass.wav").unlink()
    with pytest.raises(ValueError, match=r"test/E: missing bass\.wav"):
        find_clips(root, "musdb", "test")


def test_musdb_stems_of_different_length_are_named(tmp_path):
    root = tmp_path / "musdb"
    _write_musdb(root, {"test": ["E"]})
    sf.write(str(root / "test" / "E" / "other.wav"), np.zeros((100, 2)), MUSDB_RATE)
    with pytest.raises(ValueError, match=r"other\.wav: 100 samples"):
        find_clips(root, "musdb", "test")[0].load()


# --- wrong layouts --------------------------------------------------------------------


def test_wrong_layouts_name_the_path_and_the_expectation(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"cannot tell which dataset .*empty.*Wavfile/\*\.wav"):
        find_clips(empty)
    with pytest.raises(ValueError, match=r"no Wavfile/ folder in .*empty: expected MIR-1K layout"):
        find_clips(empty, "mir1k")
    with pytest.raises(ValueError, match=r"no test/ folder in .*empty: expected MUSDB18-HQ"):
        find_clips(empty, "musdb", "test")
    with pytest.raises(ValueError, match=r"no train/ folder in .*empty"):
        find_clips(empty, "musdb", "valid")
    (empty / "Wavfile").mkdir()
    with pytest.raises(ValueError, match=r"no \.wav files in .*Wavfile"):
        find_clips(empty, "mir1k", "all")
    with pytest.raises(FileNotFoundError, match="nowhere: no such folder"):
        find_clips(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        find_clips(empty, "mir1k", "dev")
    with pytest.raises(ValueError, match="unknown dataset 'mir2k'"):
        find_clips(empty, "mir2k")


def test_clip_source_of_unknown_kind():
    with pytest.raises(ValueError, match="unknown dataset kind"):
        ClipSource("x", ("x.wav",), "nope").load()


# --- audio_io -------------------------------------------------------------------------


def test_audio_io_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.wav"):
        read_audio(tmp_path / "missing.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio")
    with pytest.raises(ValueError, match=r"junk\.wav: cannot read audio"):
        read_audio(junk)
    with pytest.raises(ValueError, match=r"nan\.wav"):
        write_audio(tmp_path / "nan.wav", np.array([0.0, np.nan]))
    broken = tmp_path / "broken.wav"
    samples = np.zeros((8000, 2), np.float32)
    samples[4000, 1] = np.inf
    sf.write(str(broken), samples, 8000, subtype="FLOAT")
    with pytest.raises(ValueError, match=r"broken\.wav: sample 4000 \(0\.500 s\) is NaN"):
        read_audio(broken)


def test_audio_io_round_trip_and_resampling(tmp_path):
    x = np.sin(2 * np.pi * 300 * np.arange(8000) / 8000).astype(np.float32) * 0.5
    write_audio(tmp_path / "a.wav", np.stack([x, -x], axis=1), 8000, subtype="FLOAT")
    data, rate = read_audio(tmp_path / "a.wav")
    assert rate == 8000 and data.shape == (8000, 2)
    np.testing.assert_array_equal(data[:, 0], x)
    assert np.allclose(read_mono(tmp_path / "a.wav"), 0.0)  # mean of x and -x
    up = resample(x, 8000, 16_000)
    assert up.dtype == np.float32 and len(up) == 16_000
    t = np.arange(16_000) / 16_000
    np.testing.assert_allclose(up[500:-500], 0.5 * np.sin(2 * np.pi * 300 * t)[500:-500],
                               atol=2e-3)
    write_audio(tmp_path / "loud.wav", np.array([2.0, -2.0, 0.5]), 16_000)
    assert np.allclose(read_audio(tmp_path / "loud.wav")[0][:, 0], [1.0, -1.0, 0.5], atol=1e-4)


def test_a_file_given_as_a_dataset_is_named_as_a_file(tmp_path):
    song = tmp_path / "song.wav"
    song.write_bytes(b"RIFF")
    with pytest.raises(NotADirectoryError, match="song.wav: a file, not a dataset folder"):
        find_clips(song)
    with pytest.raises(NotADirectoryError, match="song.wav: a file, not a dataset folder"):
        detect_dataset(song)


@pytest.mark.parametrize("rate, channels, words", [(1, 1, "header says 1 Hz"),
                                                   (999, 2, "header says 999 Hz"),
                                                   (1000, 65, "header says 65 channels")])
def test_a_header_no_recording_has_is_refused_naming_the_file(tmp_path, rate, channels, words):
    from tinysep.stems import probe

    path = tmp_path / "odd.wav"
    sf.write(path, np.zeros((rate, channels), np.float32), rate)
    for reader in (read_audio, probe):
        with pytest.raises(ValueError, match=f"odd.wav: {words}; expected"):
            reader(path)


def test_the_header_limits_themselves_are_read(tmp_path):
    path = tmp_path / "edge.wav"
    sf.write(path, np.zeros((1000, 64), np.float32), 1000)
    audio, rate = read_audio(path)
    assert audio.shape == (1000, 64) and rate == 1000


@pytest.mark.parametrize(("edit", "message"), [
    (lambda m, name: m["splits"]["test"].__setitem__(0, "../../outside/secret"),
     "clip name '../../outside/secret' is not a file name inside"),
    (lambda m, name: m["splits"]["test"].__setitem__(0, "/tmp/secret"),
     "clip name '/tmp/secret' is not a file name inside"),
    (lambda m, name: m.__setitem__("clips", []), "'clips' must be an object"),
    (lambda m, name: m["clips"].__setitem__(name, "oops"), "must be an object, got str"),
    (lambda m, name: m["clips"][name].__setitem__("song", [1]), ".song must be a song name"),
])
def test_a_splits_file_that_points_outside_or_has_wrong_types_is_named(synth_root, tmp_path,
                                                                       edit, message):
    root = tmp_path / "corpus" / "copy"
    (root / "Wavfile").mkdir(parents=True)
    for p in (synth_root / "Wavfile").glob("*.wav"):
        (root / "Wavfile" / p.name).write_bytes(p.read_bytes())
    (tmp_path / "outside").mkdir()
    first = next((root / "Wavfile").glob("*.wav"))
    (tmp_path / "outside" / "secret.wav").write_bytes(first.read_bytes())  # readable audio
    meta = json.loads((synth_root / "splits.json").read_text())
    edit(meta, sorted(meta["splits"]["test"])[0])
    (root / "splits.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=re.escape(message)):
        find_clips(root, split="test")
