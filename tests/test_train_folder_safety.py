"""`tinysep train` and the folders it touches: a new run writes only into a new or empty
folder apart from the ones it reads, a resume checks the run's progress and restores its
checkpoint before it writes anything, and bad values stop before any work with one line
naming the option, field or file."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from train_helpers import TINY

from cli.main import main as cli_main
from tinysep.data.synth import write_corpus
from tinysep.dsp import SAMPLE_RATE
from tinysep.metrics.bss import MIN_SAMPLES
from tinysep.models import make_config, model_from_config, save_model
from tinysep.train import TrainConfig, TrainingError, train
from tinysep.training.config import MAX_BATCH_SIZE, MAX_CHUNK_SECONDS, MAX_SEED

QUICK = ["--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "2", "--chunk-seconds",
         "0.5", "--valid-clips", "1", "--valid-seconds", "1", "--no-progress"]
FLOAT_OPTIONS = ("--chunk-seconds", "--learning-rate", "--final-lr-fraction", "--sdr-weight",
                 "--weight-average", "--teacher-weight", "--valid-seconds", "--max-minutes")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("safety") / "synth"
    write_corpus(root, songs=6, seconds=4.0, seed=1, progress=False)
    return root


@pytest.fixture(scope="module")
def finished_run(corpus, tmp_path_factory) -> Path:
    """A finished one-epoch run of two steps; tests copy it before changing it."""
    out = tmp_path_factory.mktemp("runs") / "one_epoch"
    config = TrainConfig(options=dict(TINY), data=str(corpus), epochs=1, steps_per_epoch=2,
                         batch_size=2, chunk_seconds=0.5, valid_clips=1, valid_seconds=1.0,
                         seed=5)
    train(config, out, progress=False)
    return out


def _options() -> list[str]:
    return [a for k, v in TINY.items() for a in ("--option", f"{k}={v}")]


def _train(corpus: Path, out: Path, *extra: str) -> int:
    return cli_main(["train", "--data", str(corpus), "--out", str(out), *_options(), *QUICK,
                     *extra])


def _digest(folder: Path) -> dict[str, str]:
    """md5 of every file under ``folder``, by relative path."""
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _copy(folder: Path, dest: Path) -> Path:
    shutil.copytree(folder, dest)
    return dest


def _model_folder(dest: Path) -> Path:
    """A saved model of the TINY options, without any run record."""
    save_model(model_from_config(make_config("dualgate-tcn", "tiny", **TINY)), dest)
    return dest


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("tinysep train: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --out: new or empty, and apart from the folders the run reads


def test_an_out_that_is_the_init_from_model_is_refused_and_the_model_kept(corpus, tmp_path,
                                                                          capsys):
    model = _model_folder(tmp_path / "m1")
    before = _digest(model)
    assert _train(corpus, model, "--init-from", str(model)) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"--out {model}" in line and "--init-from" in line
    assert _digest(model) == before


def test_an_out_holding_user_files_is_refused_and_they_stay(corpus, tmp_path, capsys):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("my notes\n")
    (junk / "config.json").write_text('{"mine": true}\n')
    before = _digest(junk)
    assert _train(corpus, junk) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"--out {junk} is not empty" in line and "notes.txt" in line
    assert _digest(junk) == before


@pytest.mark.parametrize("where", ["data itself", "inside data"])
def test_an_out_in_the_dataset_is_refused_and_the_dataset_kept(corpus, tmp_path, capsys, where):
    data = _copy(corpus, tmp_path / "data")
    before = _digest(data)
    out = data if where == "data itself" else data / "run"
    assert _train(data, out) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"--out {out}" in line and f"--data folder {data}" in line
    assert _digest(data) == before and not (data / "run").exists()


def test_an_out_holding_the_valid_data_or_being_the_teacher_is_refused(corpus, finished_run,
                                                                       tmp_path, capsys):
    parent = tmp_path / "parent"
    valid = _copy(corpus, parent / "valid")
    before = _digest(parent)
    assert _train(corpus, parent, "--valid-data", str(valid)) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"--out {parent} holds the --valid-data folder" in line
    assert _digest(parent) == before
    teacher = _copy(finished_run, tmp_path / "teacher")
    before = _digest(teacher)
    assert _train(corpus, teacher / "student", "--teacher", str(teacher)) == 2
    assert "lies inside the --teacher folder" in _one_error_line(capsys.readouterr().err)
    assert _digest(teacher) == before


def test_an_out_that_is_a_file_is_refused(corpus, tmp_path, capsys):
    out = tmp_path / "run.txt"
    out.write_text("not a folder\n")
    assert _train(corpus, out) == 2
    assert f"--out {out}: {out} is a file" in _one_error_line(capsys.readouterr().err)
    assert out.read_text() == "not a folder\n"


def test_a_new_run_trains_into_an_empty_folder(corpus, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    assert _train(corpus, out) == 0
    assert json.loads((out / "state.json").read_text())["status"] == "stopped"


@pytest.mark.parametrize("existing", [False, True])
def test_a_run_whose_set_up_fails_leaves_no_files(corpus, tmp_path, monkeypatch, existing):
    from tinysep.training.tensorboard import RunLog

    def full_disk(*args, **kwargs):  # after run.json and state.json are written
        raise OSError("no space left on device")

    monkeypatch.setattr(RunLog, "hparams", full_disk)
    out = tmp_path / "run"
    if existing:
        out.mkdir()
    config = TrainConfig(options=dict(TINY), data=str(corpus), epochs=1, steps_per_epoch=1,
                         batch_size=2, chunk_seconds=0.5, valid_clips=1, valid_seconds=1.0)
    with pytest.raises(OSError, match="no space left"):
        train(config, out, progress=False)
    assert out.exists() == existing
    assert not existing or not any(out.iterdir())


# --resume: the progress is checked and the checkpoint restored before anything is written


def test_a_failed_restore_changes_nothing_and_the_run_still_resumes(finished_run, tmp_path,
                                                                    capsys):
    run = _copy(finished_run, tmp_path / "run")
    before = _digest(run)
    code = cli_main(["train", "--out", str(run), "--resume", "--allow-config-change",
                     "--option", "residual=8", "--epochs", "2", "--no-progress"])
    assert code == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"cannot resume {run}" in line and "other shapes" in line
    assert _digest(run) == before
    assert cli_main(["train", "--out", str(run), "--resume", "--epochs", "2",
                     "--no-progress"]) == 0
    state = json.loads((run / "state.json").read_text())
    assert (state["epoch"], state["step"]) == (2, 4)


def _drop_checkpoints(run: Path) -> None:
    shutil.rmtree(run / "checkpoints")


def _set_state(key: str, value):
    def change(run: Path) -> None:
        _edit_json(run / "state.json", lambda state: state.__setitem__(key, value))
    return change


def _drop_step(run: Path) -> None:
    _edit_json(run / "state.json", lambda state: state.pop("step"))


@pytest.mark.parametrize(("damage", "named"), [
    (_drop_checkpoints, "'checkpoint' names"),
    (_set_state("checkpoint", "checkpoints/ckpt-9"), "ckpt-9"),
    (_drop_step, "'step' is missing"),
    (_set_state("history", None), "'history' must be"),
    (_set_state("best", []), "'best' must be"),
    (_set_state("epoch", "1"), "'epoch' must be a whole number"),
], ids=["no-checkpoints", "missing-checkpoint", "no-step", "null-history", "list-best",
        "text-epoch"])
def test_a_damaged_progress_record_stops_the_resume_naming_the_field(finished_run, tmp_path,
                                                                     capsys, damage, named):
    run = _copy(finished_run, tmp_path / "run")
    damage(run)
    before = _digest(run)
    code = cli_main(["train", "--out", str(run), "--resume", "--epochs", "2", "--no-progress"])
    assert code == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"{run / 'state.json'}" in line and named in line
    assert _digest(run) == before


def test_a_truncated_checkpoint_stops_the_resume_naming_the_run(finished_run, tmp_path, capsys):
    run = _copy(finished_run, tmp_path / "run")
    (data,) = (run / "checkpoints").glob("ckpt-1.data-*")
    data.write_bytes(data.read_bytes()[:100])
    before = _digest(run)
    code = cli_main(["train", "--out", str(run), "--resume", "--epochs", "2", "--no-progress"])
    assert code == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"cannot resume {run}: its checkpoint {run / 'checkpoints' / 'ckpt-1'}" in line
    assert _digest(run) == before


@pytest.mark.parametrize("how", ["--like", "--resume"])
@pytest.mark.parametrize(("key", "value"), [
    ("final_lr_fraction", "x"), ("max_minutes", "5"), ("options", [1]), ("data", 5),
    ("init_from", 7), ("seed", "x"), ("seed", -3), ("seed", MAX_SEED + 1),
    ("sdr_weight", -100), ("train_config", None)])
def test_a_hand_edited_run_record_is_refused_naming_the_file_and_field(finished_run, tmp_path,
                                                                       capsys, how, key, value):
    run = _copy(finished_run, tmp_path / "run")
    if key == "train_config":
        _edit_json(run / "run.json", lambda record: record.__setitem__(key, value))
    else:
        _edit_json(run / "run.json", lambda record: record["train_config"].__setitem__(key, value))
    before = _digest(run)
    out = run if how == "--resume" else tmp_path / "again"
    code = cli_main(["train", how, *([] if how == "--resume" else [str(run)]), "--out", str(out),
                     "--no-progress"])
    assert code == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"{run / 'run.json'}" in line and key in line
    assert _digest(run) == before and not (tmp_path / "again").exists()


# values: refused before any work


def test_validation_and_chunk_lengths_out_of_range_are_refused(corpus, tmp_path, capsys):
    shortest = MIN_SAMPLES / SAMPLE_RATE
    TrainConfig(data="x", valid_seconds=shortest).validate()  # the bound itself is fine
    out = tmp_path / "run"
    assert _train(corpus, out, "--valid-seconds", "0.001") == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"valid_seconds must be at least {shortest:g} s" in line
    assert _train(corpus, out, "--valid-seconds", "1e9") == 2
    assert "valid_seconds must be at most" in _one_error_line(capsys.readouterr().err)
    assert _train(corpus, out, "--chunk-seconds", "1e6") == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"chunk_seconds must be at most {MAX_CHUNK_SECONDS:g} s" in line
    assert _train(corpus, out, "--batch-size", "100000000") == 2  # memory, before any is used
    line = _one_error_line(capsys.readouterr().err)
    assert f"batch_size must be at most {MAX_BATCH_SIZE}" in line
    assert not out.exists()


@pytest.mark.parametrize("option", FLOAT_OPTIONS)
@pytest.mark.parametrize("text", ["nan", "inf"])
def test_float_options_refuse_nan_and_infinity_at_parsing(corpus, tmp_path, capsys, option,
                                                          text):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as stop:
        _train(corpus, out, option, text)
    assert stop.value.code == 2
    assert f"argument {option}: expected a finite number, got '{text}'" in capsys.readouterr().err
    assert not out.exists()


def test_a_negative_sdr_weight_and_a_seed_beyond_keras_range_are_refused(corpus, tmp_path,
                                                                          capsys):
    out = tmp_path / "run"
    assert _train(corpus, out, "--loss", "l1+sdr", "--sdr-weight", "-100") == 2
    assert "sdr_weight must be a number >= 0" in _one_error_line(capsys.readouterr().err)
    assert not out.exists()
    TrainConfig(data="x", seed=MAX_SEED).validate()
    with pytest.raises(ValueError, match=rf"seed must be a whole number from 0 to {MAX_SEED}"):
        TrainConfig(data="x", seed=MAX_SEED + 1).validate()


# --init-from: weights that do not load are named with what is wrong


def _other_shapes(folder: Path) -> None:
    wider = model_from_config(make_config("dualgate-tcn", "tiny", **{**TINY, "residual": 8}))
    wider.save_weights(str(folder / "model.weights.h5"))


def _truncated(folder: Path) -> None:
    weights = folder / "model.weights.h5"
    weights.write_bytes(weights.read_bytes()[:500])


def _missing(folder: Path) -> None:
    (folder / "model.weights.h5").unlink()


@pytest.mark.parametrize(("damage", "what"), [
    (_other_shapes, "do not match config.json"),
    (_truncated, "is not a readable Keras weights file"),
    (_missing, "is missing"),
], ids=["other-shapes", "truncated", "missing"])
def test_init_from_weights_that_do_not_load_are_named(corpus, tmp_path, capsys, damage, what):
    model = _model_folder(tmp_path / "start")
    damage(model)
    before = _digest(model)
    out = tmp_path / "run"
    assert _train(corpus, out, "--init-from", str(model)) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "init_from" in line and "model.weights.h5" in line and what in line
    assert _digest(model) == before and not out.exists()


# SIGTERM: a stop request swallowed by a garbage-collection callback still stops the run


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_sigterm_swallowed_in_a_finalizer_still_stops_the_run(corpus, tmp_path, monkeypatch):
    import os
    import signal

    import tinysep.train as train_module

    real_step_function = train_module.train_step_function

    class SignalsWhenCollected:
        def __del__(self):  # Python ignores the KeyboardInterrupt the handler raises here
            os.kill(os.getpid(), signal.SIGTERM)

    def step_function(*args, **kwargs):
        step = real_step_function(*args, **kwargs)

        def signalling_step(*batch):
            SignalsWhenCollected()
            return step(*batch)

        return signalling_step

    monkeypatch.setattr(train_module, "train_step_function", step_function)
    config = TrainConfig(options=dict(TINY), data=str(corpus), epochs=1, steps_per_epoch=3,
                         batch_size=2, chunk_seconds=0.5, valid_clips=1, valid_seconds=1.0)
    with pytest.raises(TrainingError, match="training interrupted during epoch 1"):
        train(config, tmp_path / "run", progress=False)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert (state["status"], state["step"]) == ("stopped", 0)


# An unexpected error in the middle of an epoch: the folder says what finished, and resumes


def test_an_error_mid_epoch_is_recorded_and_the_run_resumes(corpus, tmp_path, monkeypatch,
                                                            capsys):
    import tinysep.training.data as data_module
    from tinysep.training.prefetch import PrefetchedBatches

    real_batches = data_module.prefetched_batches

    def failing_batches(*args, **kwargs):  # the disk goes away in the middle of epoch 2
        def batches():
            with real_batches(*args, **kwargs) as made:
                for _ in range(3):
                    yield next(made)
            raise OSError("Input/output error")

        return PrefetchedBatches(batches())  # raised on the worker, seen by the step loop

    monkeypatch.setattr(data_module, "prefetched_batches", failing_batches)
    out = tmp_path / "run"
    config = TrainConfig(options=dict(TINY), data=str(corpus), epochs=2, steps_per_epoch=2,
                         batch_size=2, chunk_seconds=0.5, valid_clips=1, valid_seconds=1.0)
    with pytest.raises(OSError, match="Input/output error"):
        train(config, out, progress=False)
    state = json.loads((out / "state.json").read_text())
    assert (state["status"], state["epoch"], state["step"]) == ("failed", 1, 2)
    assert state["stop_reason"] == ("training failed during epoch 2 "
                                    "(OSError: Input/output error)")
    assert "--resume continues from it" in capsys.readouterr().err
    monkeypatch.setattr(data_module, "prefetched_batches", real_batches)
    result = train(config, out, resume=True, progress=False)
    assert (result.epochs, result.steps, result.status) == (2, 4, "finished")
    assert json.loads((out / "state.json").read_text())["status"] == "stopped"


def test_a_run_stopped_after_its_validation_keeps_the_best_weights_its_state_names(
        corpus, tmp_path, monkeypatch):
    """A new best is staged beside the run and moved into place only once the state that
    names it is written: a stop in between leaves the earlier best in place, and the
    resumed run finishes with its own."""
    import hashlib

    import tinysep.train as train_module
    import tinysep.training.validation as validation

    scores = iter(range(1, 100))
    monkeypatch.setattr(validation, "validation_sdr", lambda model, clips: {
        "vocals": 1.0, "accompaniment": 1.0, "mean": float(next(scores))})  # always a new best
    real_save_last = train_module.save_last
    seen = {}

    def stop_in_epoch_two(model, out, config, entry):
        if entry["epoch"] == 2:
            seen["weights"] = hashlib.sha256((out / "model.weights.h5").read_bytes()).digest()
            assert (out / ".best.tmp").is_dir()  # epoch 2's best, staged only
            raise KeyboardInterrupt
        return real_save_last(model, out, config, entry)

    monkeypatch.setattr(train_module, "save_last", stop_in_epoch_two)
    config = TrainConfig(options=dict(TINY), data=str(corpus), epochs=2, steps_per_epoch=1,
                         batch_size=2, chunk_seconds=0.5, valid_clips=1, valid_seconds=1.0)
    out = tmp_path / "run"
    with pytest.raises(TrainingError, match="training interrupted during epoch 2"):
        train(config, out, progress=False)
    state = json.loads((out / "state.json").read_text())
    assert (state["epoch"], state["best"]["epoch"]) == (1, 1)
    assert hashlib.sha256((out / "model.weights.h5").read_bytes()).digest() == seen["weights"]
    assert not (out / ".best.tmp").exists()
    monkeypatch.setattr(train_module, "save_last", real_save_last)
    result = train(config, out, resume=True, progress=False)
    assert (result.epochs, result.best_epoch) == (2, 2)
    assert hashlib.sha256((out / "model.weights.h5").read_bytes()).digest() != seen["weights"]
    assert not (out / ".best.tmp").exists()
