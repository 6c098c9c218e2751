"""`tinysep hil` on your own audio: a plain wav without references, a folder with one clip
that has references and one that has none, a .npy mixture, the separated audio kept with
--save-audio, and clear errors for inputs that are not mixtures.

Real parts only: a real exported bundle, the emulated board (the agent on a pseudo-terminal),
real wav and npy files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from board_bundle import make_bundle

from cli.main import main
from hil.report import NOT_SCORED, lsb_limit
from tinysep.data.audio_io import resample
from tinysep.metrics.bss import limited_db

RATE = 16_000
SECONDS = 1.0
VARIANTS = ("float", "int8-host", "board")


@pytest.fixture(scope="module")
def songs():
    """Two short synthetic songs (mixture, vocals, accompaniment at 16 kHz)."""
    from tinysep.data.synth import synthetic_clips

    return synthetic_clips(2, SECONDS, seed=11)


@pytest.fixture(scope="module")
def exported():
    return make_bundle(float_model=True)


def _argv(exported, data, report, *extra) -> list:
    bundle, model = exported
    return ["hil", "--emulate", "--bundle", str(bundle), "--float", str(model), "--data",
            str(data), "--plots", "0", "--report", str(report), "--no-progress", *extra]


def _pcm16(path: Path, audio: np.ndarray, rate: int = RATE) -> np.ndarray:
    """Write ``audio`` as 16-bit PCM and return the int16 samples the file holds."""
    sf.write(str(path), audio, rate, subtype="PCM_16")
    return sf.read(str(path), dtype="int16")[0]


def _read(path: Path) -> np.ndarray:
    data, rate = sf.read(str(path), dtype="int16")
    assert rate == RATE and data.ndim == 1, path
    return data


def _snr(reference: np.ndarray, estimate: np.ndarray) -> float:
    reference = reference.astype(np.float64)
    return limited_db(float(np.sum(reference ** 2)),
                      float(np.sum((estimate.astype(np.float64) - reference) ** 2)))


def _check_outputs(clip_dir: Path, report: dict, clip: dict, samples: int) -> None:
    """The three outputs of one clip are there, as long as the mixture; the board's equal the
    host int8 runner's within the harness's LSB limit; float is not the mixture passed on."""
    limit, _ = lsb_limit(report)
    assert limit == 0  # the emulated board runs the host's runtime: bit-exact expected
    mixture = _read(clip_dir / "mixture.wav")
    assert mixture.size == samples
    for source in report["bundle"]["sources"]:
        outputs = {variant: _read(clip_dir / variant / f"{source}.wav") for variant in VARIANTS}
        assert all(audio.size == samples for audio in outputs.values())
        board = outputs["board"].astype(np.int32)
        assert np.abs(board - outputs["int8-host"].astype(np.int32)).max() <= limit
        float_out = outputs["float"].astype(np.int32)
        assert np.abs(float_out - mixture).max() > 300  # separated, not the mixture copied
        assert np.any(board)
        # the SNR the report gives for the board against float is the files' SNR
        assert _snr(outputs["float"], outputs["board"]) == pytest.approx(
            clip["vs_float_snr"]["int8_board"][source], abs=0.1)


def test_a_plain_wav_without_references_is_streamed_compared_and_kept(songs, exported,
                                                                      tmp_path, capsys):
    song = tmp_path / "my song.wav"
    written = _pcm16(song, songs[0].mixture)
    audio = tmp_path / "audio"
    assert main(_argv(exported, song, tmp_path / "r", "--save-audio", str(audio))) == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "r" / "hil.json").read_text())
    assert report["status"] == "finished" and report["passed"]
    assert report["data"]["dataset"] == "files" and report["data"]["split"] is None
    (clip,) = report["clips"]
    assert clip["name"] == "my song" and clip["status"] == "ok"
    assert clip["references"] is False and clip["not_scored"] == "no reference"
    for variant in ("float", "int8_host", "int8_board"):
        assert all(s["sdr"] is None and s["skipped"] == "no reference"
                   for s in clip["scores"][variant].values())
    checks = {c["name"]: c for c in report["checks"]}
    for source in ("vocals", "accompaniment"):
        assert checks[f"sdr_drop_{source}"]["passed"] is None
        assert checks[f"sdr_drop_{source}"]["text"].startswith(f"{NOT_SCORED} for {source}")
    assert checks["board_vs_host_int8_lsb"]["passed"] is True
    assert checks["board_vs_host_int8_lsb"]["value"] == 0
    assert checks["stream_integrity"]["passed"] is True
    markdown = (tmp_path / "r" / "hil.md").read_text()
    assert f"| my song | {SECONDS:.1f} | {NOT_SCORED} | {NOT_SCORED} |" in markdown
    assert "(mixture files, 1 without references)" in markdown
    assert f"SDR {NOT_SCORED}" in out and "board vs float: SNR vocals" in out
    assert out.rstrip().splitlines()[-1].startswith(f"audio: {audio}/CLIP/")

    clip_dir = audio / "my song"
    assert clip["audio_folder"] == str(clip_dir)
    assert sorted(p.name for p in clip_dir.iterdir()) == ["board", "float", "int8-host",
                                                          "mixture.wav"]
    assert np.array_equal(_read(clip_dir / "mixture.wav"), written)  # what the board got
    _check_outputs(clip_dir, report, clip, written.size)


def test_a_folder_with_and_without_references(songs, exported, tmp_path, capsys):
    data = tmp_path / "mixes"
    data.mkdir()
    scored, bare = songs
    # the mixture as float stereo at 22.05 kHz: mixed to mono and resampled on reading
    mono = resample(scored.mixture, RATE, 22_050)
    sf.write(str(data / "a.wav"), np.stack([mono, mono], axis=1), 22_050, subtype="FLOAT")
    vocals = _pcm16(data / "a.vocals.wav", scored.vocals)
    _pcm16(data / "a.accompaniment.wav", scored.accompaniment)
    _pcm16(data / "b.wav", bare.mixture)
    audio = tmp_path / "audio"
    assert main(_argv(exported, data, tmp_path / "r", "--save-audio", str(audio))) == 0
    report = json.loads((tmp_path / "r" / "hil.json").read_text())
    assert report["passed"]
    clips = {c["name"]: c for c in report["clips"]}
    assert sorted(clips) == ["a", "b"]
    assert clips["a"]["references"] is True and clips["b"]["references"] is False
    assert clips["a"]["input"]["converted"] == ["resampled 16000/22050 Hz -> 16000 Hz",
                                                "FLOAT/PCM_16 -> PCM_16"]
    for source in ("vocals", "accompaniment"):
        sdr = clips["a"]["scores"]["int8_board"][source]["sdr"]
        assert sdr is not None and np.isfinite(sdr)
        assert clips["b"]["scores"]["int8_board"][source]["sdr"] is None
        # the summary is the referenced clip's alone
        assert report["summary"]["drop"]["int8_board"][source] == pytest.approx(
            clips["a"]["drop"]["int8_board"][source])
    summary = report["summary"]
    assert summary["unreferenced_clips"] == ["b"] and summary["clips_ok"] == 2
    check = next(c for c in report["checks"] if c["name"] == "sdr_drop_vocals")
    assert check["passed"] is True
    assert "1 clip(s) without references are not scored" in check["text"]
    assert "| b | 1.0 | n/a (no reference) |" in (tmp_path / "r" / "hil.md").read_text()
    assert sorted(p.name for p in (audio / "a").iterdir()) == [
        "board", "float", "int8-host", "mixture.wav", "reference"]
    assert not (audio / "b" / "reference").exists()
    assert np.array_equal(_read(audio / "a" / "reference" / "vocals.wav"), vocals)
    for name in ("a", "b"):
        _check_outputs(audio / name, report, clips[name], int(SECONDS * RATE))
    assert capsys.readouterr().out.rstrip().splitlines()[-1].startswith(f"audio: {audio}")


def test_a_npy_mixture_with_npy_references_keeps_no_audio_unless_asked(songs, exported,
                                                                       tmp_path, capsys):
    data = tmp_path / "in"
    data.mkdir()
    clip = songs[0]
    np.save(data / "take.npy", clip.mixture.astype(np.float32))
    np.save(data / "take.vocals.npy", clip.vocals.astype(np.float32))
    np.save(data / "take.accompaniment.npy", clip.accompaniment.astype(np.float32))
    report_dir = tmp_path / "r"
    assert main(_argv(exported, data / "take.npy", report_dir)) == 0
    report = json.loads((report_dir / "hil.json").read_text())
    (record,) = report["clips"]
    assert record["references"] is True and report["passed"]
    assert [f["subtype"] for f in record["input"]["files"]] == ["npy float32"] * 3
    assert record["scores"]["float"]["vocals"]["sdr"] is not None
    assert "audio_folder" not in record and report["data"]["save_audio"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "r"]  # nothing else written
    assert "audio:" not in capsys.readouterr().out


@pytest.mark.parametrize("case", ["text file", "empty folder", "stereo npy", "split on a file",
                                  "dataset on a file", "save-audio is a file",
                                  "save-audio in the data", "missing"])
def test_inputs_that_are_not_mixtures_are_refused_naming_the_file(case, exported, tmp_path,
                                                                  capsys):
    extra = []
    if case == "text file":
        data = tmp_path / "notes.txt"
        data.write_text("not audio")
        expected = ["notes.txt", ".wav or .npy"]
    elif case == "empty folder":
        data = tmp_path / "nothing"
        data.mkdir()
        expected = ["nothing", "the folder is empty"]
    elif case == "stereo npy":
        data = tmp_path / "stereo.npy"
        np.save(data, np.zeros((2, 8000), dtype=np.float32))
        expected = ["stereo.npy", "1-D array", "(2, 8000)"]
    else:
        data = tmp_path / "song.npy"
        np.save(data, np.zeros(8000, dtype=np.float32))
        if case == "split on a file":
            extra, expected = ["--split", "train"], ["--split is for dataset folders", "song.npy"]
        elif case == "dataset on a file":
            extra, expected = ["--dataset", "mir1k"], ["--dataset mir1k", "song.npy is a file"]
        elif case == "save-audio in the data":
            data = tmp_path / "mixes"
            data.mkdir()
            np.save(data / "song.npy", np.zeros(8000, dtype=np.float32))
            extra, expected = ["--save-audio", str(data)], [
                f"--save-audio {data} is the --data {data}"]
        elif case == "save-audio is a file":
            (tmp_path / "taken").write_text("")
            extra, expected = ["--save-audio", str(tmp_path / "taken")], [
                "--save-audio", "taken is not a folder"]
        else:
            data = tmp_path / "gone.wav"
            expected = ["gone.wav", "no such file or folder"]
    assert main(_argv(exported, data, tmp_path / "r", *extra)) == 2
    err = capsys.readouterr().err
    for text in expected:
        assert text in err, (text, err)
    assert "Traceback" not in err
    assert not (tmp_path / "r").exists()  # refused before any board was started


def test_a_four_stem_bundle_keeps_every_stem_and_scores_no_clip_with_two_references(
        songs, tmp_path, capsys):
    """References name vocals and accompaniment: a vocals/drums/bass/other bundle streams the
    clip and keeps all four stems, but cannot score it against them."""
    from board_bundle import SMALL_TCN

    stems = ["vocals", "drums", "bass", "other"]
    exported = make_bundle(options=dict(SMALL_TCN, sources=stems), float_model=True)
    data = tmp_path / "in"
    data.mkdir()
    clip = songs[1]
    written = _pcm16(data / "x.wav", clip.mixture)
    _pcm16(data / "x.vocals.wav", clip.vocals)
    _pcm16(data / "x.accompaniment.wav", clip.accompaniment)
    audio = tmp_path / "audio"
    assert main(_argv(exported, data, tmp_path / "r", "--save-audio", str(audio))) == 0
    report = json.loads((tmp_path / "r" / "hil.json").read_text())
    (record,) = report["clips"]
    assert record["references"] is False
    assert record["not_scored"] == ("no reference for drums, bass, other (the clip has "
                                    "vocals, accompaniment)")
    assert [c["passed"] for c in report["checks"] if c["name"].startswith("sdr_drop_")] == [
        None] * 4
    assert sorted(p.name for p in (audio / "x" / "reference").iterdir()) == [
        "accompaniment.wav", "vocals.wav"]
    assert sorted(p.name for p in (audio / "x" / "board").iterdir()) == sorted(
        f"{s}.wav" for s in stems)
    _check_outputs(audio / "x", report, record, written.size)
