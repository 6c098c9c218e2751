"""`tinysep eval` on your own audio: a mixture file, a folder of wav / npy mixtures with or
without references, outputs kept with --save-audio, short method labels in the table and
the figure, and clear errors for paths that are not what they should be."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from train_helpers import TINY

from cli.main import main
from tinysep.eval_inputs import input_sources
from tinysep.methods import model_folder
from tinysep.metrics.table import short_labels

RATE = 16_000


def _tones(seconds: float, rate: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    vocals = 0.3 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    accompaniment = 0.2 * np.sign(np.sin(2 * np.pi * 110 * t)) + 0.01 * rng.normal(size=t.size)
    return vocals.astype(np.float32), accompaniment.astype(np.float32)


@pytest.fixture(scope="module")
def songs(tmp_path_factory) -> Path:
    """song.wav (44.1 kHz stereo) with references; bare.npy (16 kHz) without."""
    folder = tmp_path_factory.mktemp("songs")
    vocals, accompaniment = _tones(1.5, 44_100, 0)
    stereo = lambda x: np.stack([x, 0.9 * x], axis=1)  # noqa: E731
    sf.write(folder / "song.wav", stereo(vocals + accompaniment), 44_100)
    sf.write(folder / "song.vocals.wav", stereo(vocals), 44_100)
    sf.write(folder / "song.accompaniment.wav", stereo(accompaniment), 44_100)
    v, a = _tones(1.0, RATE, 1)
    np.save(folder / "bare.npy", v + a)
    return folder


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    import tf_keras as keras

    from tinysep.models import build_model, save_model

    keras.utils.set_random_seed(0)
    deep = tmp_path_factory.mktemp("a") / "very" / "long" / "folder" / "names" / "run"
    return save_model(build_model("dualgate-tcn", **TINY), deep)


def test_file_and_folder_layouts(songs, tmp_path):
    sources = input_sources(songs)
    assert [s.name for s in sources] == ["bare", "song"]
    bare, song = (s.load() for s in sources)
    assert not bare.has_references and len(bare.mixture) == RATE
    assert song.has_references and len(song.mixture) == int(1.5 * RATE)
    np.testing.assert_allclose(song.mixture, song.vocals + song.accompaniment, atol=2e-3)
    assert [s.name for s in input_sources(songs / "song.wav")] == ["song"]
    with pytest.raises(ValueError, match="a reference source, not a mixture"):
        input_sources(songs / "song.vocals.wav")
    odd = tmp_path / "odd"
    odd.mkdir()
    sf.write(odd / "x.wav", np.zeros(800), RATE)
    sf.write(odd / "x.vocals.wav", np.zeros(800), RATE)
    with pytest.raises(ValueError, match="x.accompaniment.wav"):
        input_sources(odd)
    np.save(odd / "y.npy", np.zeros((2, 100)))
    (odd / "x.vocals.wav").unlink()
    with pytest.raises(ValueError, match=r"y.npy: expected a non-empty 1-D array"):
        [s.load() for s in input_sources(odd)]


def test_references_with_no_mixture_are_named_not_skipped(tmp_path):
    v, a = _tones(1.0, RATE, 2)
    sf.write(tmp_path / "take.wav", v + a, RATE)
    sf.write(tmp_path / "take.vocals.wav", v, RATE)
    sf.write(tmp_path / "take.accompaniment.wav", a, RATE)
    assert [s.name for s in input_sources(tmp_path)] == ["take"]
    # the mixture saved under another name: its references belong to nothing
    sf.write(tmp_path / "demo.vocals.wav", v, RATE)
    sf.write(tmp_path / "demo.accompaniment.wav", a, RATE)
    sf.write(tmp_path / "demo-mix.wav", v + a, RATE)
    with pytest.raises(ValueError, match=r"demo.accompaniment.wav, demo.vocals.wav: "
                                         r"reference\(s\) with no mixture beside them"):
        input_sources(tmp_path)
    # a reference of another format than its mixture is not one of its references either
    (tmp_path / "demo.vocals.wav").unlink()
    (tmp_path / "demo.accompaniment.wav").unlink()
    np.save(tmp_path / "take.vocals.npy", v)
    with pytest.raises(ValueError, match=r": take.vocals.npy: reference\(s\) with no mixture"):
        input_sources(tmp_path)


def test_model_paths_name_their_folder(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text("{}")
    (bundle / "model.tflite").write_bytes(b"x")
    assert model_folder(bundle / "model.tflite") == bundle
    assert model_folder(bundle) == bundle
    with pytest.raises(FileNotFoundError, match="model:.*nothere: no such file or folder"):
        model_folder(tmp_path / "nothere")
    (tmp_path / "loose.tflite").write_bytes(b"x")
    with pytest.raises(ValueError, match="loose.tflite: a file with neither manifest.json nor "
                       "config.json beside it"):
        model_folder(tmp_path / "loose.tflite")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: a folder with neither manifest.json nor "
                       "config.json; expected a saved model folder"):
        model_folder(tmp_path / "empty")


def test_short_labels():
    methods = ["mix", "model:/a/b/run", "model:/c/d/run", "model:/x/bundle/model.tflite",
               "model:runs/best/"]
    assert short_labels(methods) == {
        "mix": "mix", "model:/a/b/run": "model:b/run", "model:/c/d/run": "model:d/run",
        "model:/x/bundle/model.tflite": "model:bundle", "model:runs/best/": "model:best"}


def test_cli_eval_on_files_keeps_audio_with_short_labels(songs, model, tmp_path, capfd,
                                                          monkeypatch):
    import matplotlib.figure

    ticks: list[str] = []
    save = matplotlib.figure.Figure.savefig

    def record_ticks(fig, *args, **kwargs):
        ticks.extend(t.get_text() for ax in fig.axes for t in ax.get_xticklabels())
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", record_ticks)
    out = tmp_path / "audio"
    report = tmp_path / "eval.json"
    code = main(["eval", "--method", f"mix,model:{model}", "--data", str(songs), "--json",
                 str(report), "--save-audio", str(out), "--jobs", "1", "--no-progress"])
    printed, errors = capfd.readouterr()
    assert code == 0, printed
    # The worker process loads TensorFlow without its CUDA / absl start-up lines.
    assert "cuda" not in errors.lower() and "absl" not in errors.lower(), errors
    data = json.loads(report.read_text())
    by_name = {c["name"]: c for c in data["clips"]}
    assert by_name["song"]["references"] is True and by_name["bare"]["references"] is False
    assert by_name["song"]["methods"][f"model:{model}"]["sources"]["vocals"]["sdr"] is not None
    assert by_name["bare"]["methods"]["mix"]["sources"]["vocals"]["sdr"] is None
    assert "1 clip(s) without references, separated but not scored: bare" in printed
    # Short labels: the table stays narrow, the full path is given once below it.
    table = printed.split("wall time")[0]
    assert max(len(line) for line in table.splitlines() if "model:" in line
               and "=" not in line) < 110
    assert "model:run " in table and f"model:run = model:{model}" in table
    assert "model:run" in ticks and not any(str(model) in t for t in ticks)
    # Listenable outputs: 16 kHz wavs per clip and method, references where they exist.
    for clip in ("song", "bare"):
        assert sf.info(out / clip / "mixture.wav").samplerate == RATE
        for method in ("mix", "model-run"):
            for source in ("vocals", "accompaniment"):
                audio, rate = sf.read(out / clip / method / f"{source}.wav")
                assert rate == RATE and len(audio) == len(sf.read(out / clip / "mixture.wav")[0])
    assert (out / "song" / "reference" / "vocals.wav").is_file()
    assert not (out / "bare" / "reference").exists()
    np.testing.assert_allclose(sf.read(out / "song" / "mix" / "vocals.wav")[0],
                               sf.read(out / "song" / "mixture.wav")[0], atol=1e-4)


def test_cli_eval_bad_paths_say_what_they_are(songs, tmp_path, capsys):
    args = ["--method", "mix", "--json", str(tmp_path / "e.json"), "--no-progress"]
    assert main(["eval", "--data", str(tmp_path / "x.wav"), *args]) == 2
    assert "x.wav: no such file or folder" in capsys.readouterr().err
    assert main(["eval", "--data", str(songs / "song.vocals.wav"), *args]) == 2
    assert "a reference source, not a mixture" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["eval", "--data", str(empty), *args]) == 2
    assert "neither a dataset" in capsys.readouterr().err
    assert main(["eval", "--data", str(songs / "song.wav"), "--method",
                 f"model:{tmp_path}/bundle/model.tflite", "--json", str(tmp_path / "e.json")]) == 2
    assert "bundle/model.tflite: no such file or folder" in capsys.readouterr().err


def _folder_state(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("case", ["inside the data", "the data itself", "holds the model",
                                  "a user's folder"])
def test_save_audio_never_lands_on_the_data_a_model_or_a_users_files(case, songs, model,
                                                                     tmp_path, capsys):
    """Each clip's mixture.wav, reference/ and method folders would replace files of those
    names: a folder that is or lies inside the data, holds a model, or holds a user's files
    is refused before anything is separated, and nothing in it changes."""
    data = tmp_path / "data"
    data.mkdir()
    for path in songs.iterdir():
        (data / path.name).write_bytes(path.read_bytes())
    save = {"inside the data": data / "song", "the data itself": data,
            "holds the model": model.parents[3], "a user's folder": tmp_path / "mine"}[case]
    save.mkdir(parents=True, exist_ok=True)
    if case == "a user's folder":
        (save / "song").mkdir()
        (save / "song" / "mixture.wav").write_bytes(b"the user's own take")
    before = {folder: _folder_state(folder) for folder in (data, save)}
    code = main(["eval", "--method", f"mix,model:{model}", "--data", str(data), "--json",
                 str(tmp_path / "eval.json"), "--save-audio", str(save), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    expected = {"inside the data": "lies inside the --data", "the data itself": "is the --data",
                "holds the model": f"holds the model:{model}",
                "a user's folder": "is not empty and holds no saved-audio.json"}[case]
    assert f"--save-audio {save} {expected}" in err
    assert all(_folder_state(folder) == state for folder, state in before.items())
    assert not (tmp_path / "eval.json").exists()


def test_save_audio_writes_again_into_its_own_earlier_folder(songs, tmp_path, capsys):
    out = tmp_path / "audio"
    argv = ["eval", "--method", "mix", "--data", str(songs), "--json", str(tmp_path / "e.json"),
            "--save-audio", str(out), "--jobs", "1", "--no-progress"]
    assert main(argv) == 0
    assert json.loads((out / "saved-audio.json").read_text()) == {"command": "eval"}
    first = sf.read(out / "song" / "mix" / "vocals.wav")[0]
    assert main(argv) == 0  # an earlier --save-audio folder is written over
    assert np.array_equal(sf.read(out / "song" / "mix" / "vocals.wav")[0], first)
    assert sorted(p.name for p in out.iterdir()) == ["bare", "saved-audio.json", "song"]
    capsys.readouterr()
