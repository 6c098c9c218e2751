"""`tinysep prune`, `quantize` and `sweep` on hostile input: every bad option is refused by
name before any work, no folder the command does not own is written or deleted, and a
refused or failed command leaves nothing behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from train_helpers import TINY

from cli.main import main
from convert.export import MAX_FRAMES_PER_INVOKE


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny untrained model folder and a 4-clip synthetic corpus (seconds to build)."""
    import tf_keras as keras

    from tinysep.data.synth import write_corpus
    from tinysep.models import build_model, save_model

    root = tmp_path_factory.mktemp("outputs")
    keras.utils.set_random_seed(0)
    write_corpus(root / "corpus", songs=4, seconds=3.0, seed=3, progress=False)
    model = save_model(build_model("dualgate-tcn", **TINY), root / "model")
    return model, root / "corpus"


@pytest.fixture
def run_folder(inputs, tmp_path) -> Path:
    """A copy of the model as `tinysep train` leaves it: run records beside the model."""
    folder = tmp_path / "run"
    shutil.copytree(inputs[0], folder)
    (folder / "run.json").write_text('{"train_config": {}}\n')
    (folder / "state.json").write_text("{}\n")
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "step1.weights.h5").write_bytes(b"weights")
    (folder / "history.png").write_bytes(b"\x89PNG")
    return folder


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every entry under ``root`` (hidden ones too): file bytes, None for a folder."""
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes()
            for p in sorted(root.rglob("*"))}


def _cli(args: list[str], capsys) -> tuple[int, str]:
    """Exit status and stderr of ``tinysep ARGS`` (a refusal at parsing included)."""
    capsys.readouterr()
    try:
        status = main(args)
    except SystemExit as stop:
        status = stop.code
    return status, capsys.readouterr().err


def _refused(args: list[str], capsys, root: Path, *words: str) -> str:
    """Run ``args``, check it exits 2 with one error line holding ``words`` and leaves
    ``root`` byte for byte as it was; the error line."""
    before = _tree(root)
    status, err = _cli(args, capsys)
    line = err.strip().splitlines()[-1]
    assert status == 2, err
    assert "Traceback" not in err
    for word in words:
        assert word in line, (word, line)
    assert _tree(root) == before
    return line


# --- prune ---------------------------------------------------------------------------------

def _prune(model: Path, corpus: Path, out: Path, *extra: str) -> list[str]:
    return ["prune", str(model), "--data", str(corpus), "--out", str(out), "--narrow",
            "hidden=4", "--steps", "0", "--max-clips", "2", "--no-progress", *extra]


@pytest.mark.parametrize("where", ["itself", "inside", "around"])
def test_prune_refuses_an_out_that_is_inside_or_around_the_model(where, inputs, run_folder,
                                                                  tmp_path, capsys):
    out = {"itself": run_folder, "inside": run_folder / "pruned", "around": tmp_path}[where]
    _refused(_prune(run_folder, inputs[1], out, "--force"), capsys, tmp_path, "--out",
             str(out))


def test_prune_force_replaces_only_a_folder_of_its_own_files(inputs, tmp_path, capsys):
    from convert.prune import PRUNE_REPORT_FILE, PRUNED_FILES, save_pruned
    from tinysep.models import load_model

    model, corpus = inputs
    junk = tmp_path / "junk"
    (junk / "sub").mkdir(parents=True)
    (junk / "config.json").write_text("{}\n")
    (junk / "sub" / "notes.txt").write_text("mine")
    _refused(_prune(model, corpus, junk, "--force"), capsys, tmp_path, "--out", "sub")
    with pytest.raises(ValueError, match="holds sub"):  # the library refuses it too
        save_pruned(load_model(model), junk, {})
    assert (junk / "sub" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk"]

    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / PRUNE_REPORT_FILE).write_text('{"old": true}\n')
    _refused(_prune(model, corpus, earlier), capsys, tmp_path, "already exists", "--force")
    status, err = _cli(_prune(model, corpus, earlier, "--force"), capsys)
    assert status == 0, err
    assert {p.name for p in earlier.iterdir()} == PRUNED_FILES
    assert "old" not in json.loads((earlier / PRUNE_REPORT_FILE).read_text())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier", "junk"]


@pytest.mark.parametrize("option, value", [
    ("--batch-size", "0"), ("--chunk-frames", "0"), ("--chunk-frames", "3"),
    ("--learning-rate", "-1"), ("--learning-rate", "0"), ("--learning-rate", "nan"),
    ("--learning-rate", "inf"), ("--max-clips", "0"), ("--min-weights", "-1"),
    ("--steps", "-1"), ("--sparsity", "nan"),
])
def test_prune_refuses_a_bad_number_by_name(option, value, inputs, tmp_path, capsys):
    model, corpus = inputs
    args = ["prune", str(model), "--data", str(corpus), "--out", str(tmp_path / "p"),
            "--sparsity", "0.5", "--steps", "2", option, value]
    _refused(args, capsys, tmp_path, option, repr(value))


@pytest.mark.parametrize("width, words", [
    ("residual=0", ("--narrow", "residual")), ("bogus=3", ("--narrow", "bogus")),
    ("residual=7", ("--narrow", "residual=7")), ("hidden", ("--narrow", "'hidden'")),
])
def test_prune_checks_narrow_widths_against_the_model(width, words, inputs, tmp_path,
                                                      capsys):
    model, corpus = inputs
    args = ["prune", str(model), "--data", str(corpus), "--out", str(tmp_path / "p"),
            "--narrow", width, "--steps", "0"]
    _refused(args, capsys, tmp_path, *words)


# --- quantize ------------------------------------------------------------------------------

def _quantize(model: Path, corpus: Path, out: Path, *extra: str) -> list[str]:
    return ["quantize", str(model), "--data", str(corpus), "--out", str(out),
            "--calibration-frames", "64", "--max-clips", "2", "--eval-clips", "1",
            "--no-progress", *extra]


def _bundle_like(folder: Path) -> Path:
    """A folder holding what `tinysep export` writes (its manifest names model.tflite)."""
    from firmware_host.bundle.layout import MANIFEST_FILE, MODEL_FILE

    folder.mkdir()
    (folder / MODEL_FILE).write_bytes(b"TFL3 model")
    (folder / MANIFEST_FILE).write_text('{"format": 1}\n')
    return folder


@pytest.mark.parametrize("kind", ["bundle", "model", "unrelated", "quantize+extra", "file",
                                  "users-report"])
def test_quantize_refuses_an_out_it_does_not_own(kind, inputs, run_folder, tmp_path, capsys):
    from cli.quantize import REPORT_FILE

    out = tmp_path / kind
    if kind == "bundle":
        _bundle_like(out)
    elif kind == "model":
        out = run_folder
    elif kind == "unrelated":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    elif kind == "quantize+extra":
        out.mkdir()
        (out / REPORT_FILE).write_text('{"command": "quantize"}\n')
        (out / "notes.txt").write_text("mine")
    elif kind == "users-report":  # a file of the user's that bears the report's name
        out.mkdir()
        (out / REPORT_FILE).write_text('{"mine": 1}\n')
    else:
        out.write_text("mine")
    words = {"quantize+extra": ["notes.txt"],
             "users-report": ["is not a report of `tinysep quantize`"]}.get(kind, [])
    _refused(_quantize(run_folder, inputs[1], out, "--quant", "float16"), capsys, tmp_path,
             "--out", str(out), *words)


@pytest.mark.parametrize("option, value", [
    ("--qat-batch-size", "0"), ("--qat-learning-rate", "-1"), ("--qat-learning-rate", "nan"),
    ("--qat-chunk-frames", "1"), ("--qat-steps", "-1"), ("--eval-clips", "-1"),
    ("--max-clips", "-1"), ("--max-clips", "0"), ("--calibration-frames", "0"),
    ("--frames-per-invoke", "0"), ("--frames-per-invoke", str(MAX_FRAMES_PER_INVOKE + 1)),
    ("--study-sizes", "0"), ("--study-sizes", "16,x"), ("--study-seeds", "0"),
    ("--eval-split", "bogus"),
])
def test_quantize_refuses_a_bad_option_before_any_work(option, value, inputs, tmp_path,
                                                       capsys):
    model, corpus = inputs
    args = _quantize(model, corpus, tmp_path / "q", "--qat-steps", "1", option, value)
    _refused(args, capsys, tmp_path, option, repr(value))


def test_quantize_refuses_an_eval_split_without_clips_before_any_work(inputs, tmp_path,
                                                                      capsys):
    model, corpus = inputs
    _refused(_quantize(model, corpus, tmp_path / "q", "--eval-split", "valid"), capsys,
             tmp_path, "--eval-split valid")
    _refused(_quantize(model, corpus, tmp_path / "q", "--quant", "float16", "--keep-float",
                       "in_proj"), capsys, tmp_path, "--keep-float", "int8")


def test_a_misspelt_keep_float_layer_is_refused_before_calibration(inputs, tmp_path, capsys):
    """The streaming model's layers are checked before calibration (the converter's own
    check, after conversion, says "the model has no such layer"); nothing is written."""
    model, corpus = inputs
    line = _refused(_quantize(model, corpus, tmp_path / "q", "--keep-float", "in_proj,inproj"),
                    capsys, tmp_path, "['inproj']", "streaming model has no such layer",
                    "in_proj")
    assert "calibration" not in line
    _refused(["export", str(model), "--calibration", str(corpus), "--out",
              str(tmp_path / "bundle"), "--keep-float", "inproj", "--no-progress"],
             capsys, tmp_path, "['inproj']", "streaming model has no such layer")


def test_quantize_writes_whole_folders_or_nothing(inputs, tmp_path, capsys):
    from cli.quantize import LAYER_ERROR_FILES, QUANTIZE_FILES, REPORT_FILE
    from firmware_host.bundle.layout import MODEL_FILE

    model, corpus = inputs
    empty = tmp_path / "empty"
    empty.mkdir()
    _refused(_quantize(model, empty, tmp_path / "q"), capsys, tmp_path, str(empty))

    out = tmp_path / "q"
    status, err = _cli(_quantize(model, corpus, out, "--layer-errors"), capsys)
    assert status == 0, err
    written = {p.name for p in out.iterdir()}
    assert written == {MODEL_FILE, REPORT_FILE, *LAYER_ERROR_FILES}
    assert written <= QUANTIZE_FILES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "q"]
    # A refused run (a layer the model lacks) leaves the earlier
    # output as it was and no half-written folder beside it.
    _refused(_quantize(model, corpus, out, "--keep-float", "no_such_layer"), capsys,
             tmp_path, "no_such_layer")
    # Writing over an earlier quantize's output replaces it whole.
    status, err = _cli(_quantize(model, corpus, out, "--quant", "float16"), capsys)
    assert status == 0, err
    assert {p.name for p in out.iterdir()} == {MODEL_FILE, REPORT_FILE}
    assert json.loads((out / REPORT_FILE).read_text())["mode"] == "float16"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "q"]


# --- sweep ---------------------------------------------------------------------------------

def _sweep(model: Path, corpus: Path, out: Path, *extra: str) -> list[str]:
    return ["sweep", str(model), "--data", str(corpus), "--out", str(out), "--quant",
            "dynamic", "--eval-clips", "1", "--max-clips", "2", "--no-progress", *extra]


def _sweep_folder(out: Path, model: Path) -> Path:
    """A sweep folder whose plan.json matches :func:`_sweep`'s settings on ``model``."""
    out.mkdir()
    (out / "plan.json").write_text(json.dumps(
        {"model": str(model), "frames_per_invoke": 1, "prune_steps": 300, "eval_clips": 1}))
    (out / "cells").mkdir()
    return out


@pytest.mark.parametrize("kind", ["results", "model", "sweep+extra"])
def test_sweep_refuses_an_out_it_does_not_own(kind, inputs, run_folder, tmp_path, capsys):
    out = tmp_path / kind
    if kind == "results":
        out.mkdir()
        (out / "results.csv").write_text("my,own\n1,2\n")
    elif kind == "model":
        out = run_folder
    else:
        _sweep_folder(out, run_folder)
        (out / "notes.txt").write_text("mine")
    _refused(_sweep(run_folder, inputs[1], out), capsys, tmp_path, "--out", str(out))


@pytest.mark.parametrize("name, text", [
    ("plan.json", "[1]"), ("plan.json", '{"model": "\x01"}'),
    ("cells/base-dynamic.json", "[]"), ("cells/base-dynamic.json", '{"id": "\x01"}'),
    ("cells/base-dynamic.json", '{"id": "base-dynamic"}'),
])
def test_sweep_names_a_damaged_json_file(name, text, inputs, tmp_path, capsys):
    model, corpus = inputs
    out = _sweep_folder(tmp_path / "w", model)
    (out / name).write_text(text)
    _refused(_sweep(model, corpus, out), capsys, tmp_path, str(out / name))


def test_sweep_writes_no_plan_until_the_model_and_data_load(inputs, tmp_path, capsys):
    from convert.sweep import make_plan, run_sweep

    model, corpus = inputs
    bad = tmp_path / "bad"
    shutil.copytree(model, bad)
    (bad / "model.weights.h5").write_bytes(b"not hdf5")
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "w4"
    _refused(_sweep(bad, corpus, out), capsys, tmp_path, "model.weights.h5")
    _refused(_sweep(model, empty, out), capsys, tmp_path, str(empty))
    plan = make_plan([0], ["dynamic"], [64], eval_clips=1)
    for args in ((bad, corpus), (model, empty)):  # the library alone writes nothing either
        with pytest.raises((OSError, ValueError)):
            run_sweep(*args, out, plan, max_clips=2, progress=False)
        assert not out.exists()


@pytest.mark.parametrize("width, words", [
    ("residual=0", ("--widths", "residual=0")), ("bogus=3", ("--widths", "bogus")),
    ("hidden=9", ("--widths", "hidden=9")), ("hidden", ("--widths", "'hidden'")),
])
def test_sweep_checks_widths_before_any_cell(width, words, inputs, tmp_path, capsys):
    model, corpus = inputs
    _refused(_sweep(model, corpus, tmp_path / "w", "--widths", width), capsys, tmp_path,
             *words)


def test_sweep_plan_checks_widths_against_the_model(inputs, tmp_path):
    from convert.sweep import make_plan, run_sweep
    from tinysep.models import build_model, read_config, save_model

    model, corpus = inputs
    with pytest.raises(ValueError, match="bogus"):
        make_plan([0], ["dynamic"], [64], [{"bogus": 3}], config=read_config(model))
    with pytest.raises(ValueError, match="from 1 to"):
        make_plan([0], ["dynamic"], [64], frames_per_invoke=MAX_FRAMES_PER_INVOKE + 1)
    # channels a layer fixes: refused when the base model loads, before the base cells run
    unet = save_model(build_model("unet-se-sru", channels=[8, 16], units=16), tmp_path / "u")
    plan = make_plan([0], ["dynamic"], [64], [{"channels": [8, 12]}], eval_clips=1)
    out = tmp_path / "w"
    with pytest.raises(ValueError, match="channels=.*fixes them"):
        run_sweep(unet, corpus, out, plan, max_clips=2, progress=False)
    assert not out.exists()


@pytest.mark.parametrize("option, value", [
    ("--frames-per-invoke", str(MAX_FRAMES_PER_INVOKE + 1)), ("--calibration-frames", "nan"),
    ("--calibration-frames", "2.7"), ("--calibration-frames", "0"), ("--max-clips", "-5"),
    ("--eval-clips", "0"), ("--prune-steps", "0"), ("--quant", "int4"), ("--sparsity", "nan"),
])
def test_sweep_refuses_a_bad_number_by_name(option, value, inputs, tmp_path, capsys):
    model, corpus = inputs
    _refused(_sweep(model, corpus, tmp_path / "w", option, value), capsys, tmp_path, option,
             repr(value))
