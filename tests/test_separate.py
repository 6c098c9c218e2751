"""`tinysep separate`: songs of any rate and channel count to stem files, block by block, on
the float model and on an int8 bundle; bad inputs are named and leave nothing behind."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile
from board_bundle import make_bundle

from cli.main import main
from tinysep.stems import separate_file


def _song(seconds: float, rate: int, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    voice = 0.2 * np.sin(2 * np.pi * (220 + 20 * np.sin(2 * np.pi * 3 * t)) * t)
    chans = [voice + 0.05 * (c + 1) * rng.standard_normal(t.size) for c in range(channels)]
    return np.stack(chans, axis=1).astype(np.float32)


@pytest.fixture(scope="module")
def models():
    return make_bundle(float_model=True)


def test_stems_keep_rate_and_channels_and_add_up_to_the_input(models, tmp_path):
    bundle, model = models
    song = tmp_path / "song.flac"
    audio = _song(2.5, 44100, 2)
    soundfile.write(str(song), audio, 44100)
    out = tmp_path / "stems"
    assert main(["separate", str(song), "--out", str(out), "--model", str(model),
                 "--no-progress"]) == 0
    vocals, rate = soundfile.read(str(out / "song" / "vocals.wav"), always_2d=True)
    accompaniment, _ = soundfile.read(str(out / "song" / "accompaniment.wav"), always_2d=True)
    assert rate == 44100 and vocals.shape == audio.shape == accompaniment.shape
    np.testing.assert_allclose(vocals + accompaniment, audio, atol=2.0 / 32768)
    assert 0.0 < np.abs(vocals).max() and np.abs(vocals - audio).max() > 1e-3
    report = json.loads((out / "separate.json").read_text())
    assert report["songs"][0]["channels"] == 2 and report["failed"] == []
    assert not any(p.name.startswith(".") for p in out.iterdir())


@pytest.mark.parametrize("kind", ["float", "bundle"])
def test_block_by_block_equals_one_pass(models, tmp_path, kind):
    """At 16 kHz mono, 1-second blocks (with their past context) give the one-pass result."""
    from convert.runtime import BundleRunner
    from tinysep.models import load_model, separate

    bundle, model = models
    if kind == "float":
        keras_model = load_model(model)
        separator = lambda audio: separate(keras_model, audio)  # noqa: E731
    else:
        separator = BundleRunner(bundle).separate
    audio = _song(3.3, 16000, 1, seed=2)[:, 0]
    path = tmp_path / "mono.wav"
    soundfile.write(str(path), audio, 16000, subtype="FLOAT")
    sources = ["vocals", "accompaniment"]
    summary = separate_file(path, tmp_path / "out", separator, sources, progress=False,
                            block_seconds=1.0)
    whole = separator(soundfile.read(str(path), dtype="float32")[0])
    blocks, _ = soundfile.read(summary["outputs"]["vocals"])
    np.testing.assert_allclose(blocks, whole["vocals"], atol=2.0 / 32768)


def test_bundle_model_file_start_and_duration(models, tmp_path):
    bundle, _ = models
    song = tmp_path / "long.wav"
    soundfile.write(str(song), _song(3.0, 22050, 1), 22050, subtype="PCM_16")
    out = tmp_path / "o"
    assert main(["separate", str(song), "--out", str(out), "--model",
                 str(bundle / "model.tflite"), "--start", "0.5", "--duration", "1.25",
                 "--no-progress"]) == 0
    vocals, rate = soundfile.read(str(out / "long" / "vocals.wav"))
    assert rate == 22050 and vocals.shape == (int(round(1.25 * 22050)),)
    assert "int8 bundle" in json.loads((out / "separate.json").read_text())["model"]


def test_bad_inputs_are_named_and_leave_nothing_behind(models, tmp_path, capsys):
    _, model = models
    fake = tmp_path / "fake.wav"
    fake.write_text("not audio")
    song = tmp_path / "text.mp3"
    song.write_text("hello")
    with pytest.raises(ValueError, match="text.mp3: not a readable audio file \\(its contents"):
        separate_file(song, tmp_path / "none", lambda audio: {}, ["vocals"], progress=False)
    assert not (tmp_path / "none").exists()
    good = tmp_path / "good.wav"
    soundfile.write(str(good), _song(1.0, 16000, 1), 16000)
    out = tmp_path / "o"
    argv = ["separate", str(fake), str(good), "--out", str(out), "--model", str(model),
            "--no-progress"]
    assert main(argv) == 1
    printed = capsys.readouterr().out
    assert "fake.wav" in printed and "not a readable audio file" in printed
    assert sorted(p.name for p in out.iterdir()) == ["good", "separate.json"]
    # the stems exist now: a second run refuses to replace them unless asked
    assert main(argv[:1] + argv[2:]) == 1
    assert "--overwrite" in capsys.readouterr().out
    assert main(argv[:1] + argv[2:] + ["--overwrite"]) == 0
    assert main(["separate", str(good), "--out", str(out), "--duration", "0"]) == 2
    assert main(["separate", str(tmp_path / "missing.wav"), "--out", str(out)]) == 2
    assert main(["separate", str(good), "--out", str(out), "--model", str(tmp_path)]) == 2
    assert main(["separate", str(good), "--out", str(out), "--start", "5", "--model",
                 str(model)]) == 1
    assert "past its end" in capsys.readouterr().out


def test_the_emulated_board_writes_what_the_host_int8_writes(models, tmp_path):
    """`--emulate` streams the song through the board agent on a pseudo-terminal and writes
    what the board returns: the host int8 stems, to within a few LSB."""
    bundle, _ = models
    song = tmp_path / "song.wav"
    soundfile.write(str(song), _song(2.0, 32000, 2, seed=4), 32000)
    host, board = tmp_path / "host", tmp_path / "board"
    common = [str(song), "--model", str(bundle), "--no-progress"]
    assert main(["separate", *common, "--out", str(host)]) == 0
    assert main(["separate", *common, "--out", str(board), "--emulate"]) == 0
    a, rate = soundfile.read(str(host / "song" / "vocals.wav"), dtype="int16")
    b, _ = soundfile.read(str(board / "song" / "vocals.wav"), dtype="int16")
    assert rate == 32000 and a.shape == b.shape == (64000, 2)
    # the host runner takes the input transform in float32, the board's pipeline in float64:
    # an input value now and then lands on the other int8 step, a few LSB of output
    diff = a.astype(np.float64) - b
    assert np.abs(b).max() > 100 and np.abs(diff).max() <= 64
    assert 20 * np.log10(np.linalg.norm(a) / max(np.linalg.norm(diff), 1e-9)) > 50
    report = json.loads((board / "separate.json").read_text())
    assert "emulated board" in report["model"]
    assert sorted(p.name for p in board.iterdir()) == ["separate.json", "song"]


def test_board_separation_needs_a_bundle(models, tmp_path, capsys):
    _, model = models
    song = tmp_path / "s.wav"
    soundfile.write(str(song), _song(0.5, 16000, 1), 16000)
    assert main(["separate", str(song), "--out", str(tmp_path / "o"), "--model", str(model),
                 "--emulate"]) == 2
    assert "deploy bundle" in capsys.readouterr().err


def test_a_file_with_nan_samples_is_named_and_leaves_no_stems(models, tmp_path, capsys):
    _, model = models
    audio = _song(2.0, 16000, 2)
    audio[24000, 1] = np.nan  # 1.5 s into the second channel
    song = tmp_path / "broken.wav"
    soundfile.write(str(song), audio, 16000, subtype="FLOAT")
    out = tmp_path / "o"
    assert main(["separate", str(song), "--out", str(out), "--model", str(model),
                 "--no-progress"]) == 1
    printed = capsys.readouterr().out
    assert "broken.wav: sample 24000 (1.500 s) is NaN or infinite" in printed
    assert sorted(p.name for p in out.iterdir()) == ["separate.json"]


def test_a_model_that_looks_ahead_reads_each_block_that_much_further(tmp_path):
    """A float model with ``mask_delay`` separates block by block as in one pass, because
    each block is read as far ahead as its masks look (without that, block edges differ)."""
    import tf_keras as keras

    from cli.separate import load_separator
    from tinysep.models import make_config, model_from_config, save_model

    keras.utils.set_random_seed(3)
    folder = save_model(model_from_config(make_config(
        "dualgate-tcn", "tiny", residual=6, hidden=6, blocks=2, repeats=1, se_window=2,
        mask_delay=12)), tmp_path / "ahead")
    separator, sources, description, lookahead = load_separator(folder)
    assert lookahead == pytest.approx(12 * 128 / 16000) and "float model" in description
    path = tmp_path / "mono.wav"
    audio = _song(3.3, 16000, 1, seed=5)[:, 0]
    soundfile.write(str(path), audio, 16000, subtype="FLOAT")
    whole = separator(soundfile.read(str(path), dtype="float32")[0])["vocals"]
    results = {}
    for name, ahead in (("read-ahead", lookahead), ("none", 0.0)):
        summary = separate_file(path, tmp_path / name, separator, sources, progress=False,
                                block_seconds=1.0, lookahead_seconds=ahead)
        results[name] = soundfile.read(summary["outputs"]["vocals"])[0]
    np.testing.assert_allclose(results["read-ahead"], whole, atol=2.0 / 32768)
    assert np.abs(results["none"] - whole).max() > 1e-3
