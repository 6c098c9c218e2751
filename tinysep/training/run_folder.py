"""A training run folder: its files, written atomically so that a kill leaves them whole, the
run record (``run.json``: config, data, versions, resumes) and the progress (``state.json``).

::

    OUT/config.json, OUT/model.weights.h5   best weights so far (tinysep.models.load_model)
    OUT/last/           the last validated epoch's weights: a model folder with its record
    OUT/run.json        training config, model config, data fingerprint, command, versions
    OUT/state.json      progress: epochs and steps done, best epoch, history, checkpoint
    OUT/checkpoints/    TensorFlow checkpoints (model + optimizer) of the last epochs
    OUT/logs/           TensorBoard event files
    OUT/history.png     loss and validation SDR per epoch

``state.json`` is written after the checkpoint it names, so it always points at a
complete checkpoint; the checkpoint manager keeps a few, so the one it names survives
the next save.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np

import tinysep
from tinysep.folder_writes import nesting, staged_folder
from tinysep.jsonfile import is_finite_number, is_whole_number, read_json, write_json_atomic
from tinysep.model_record import RUN_FILE, TRAINING_FILE
from tinysep.training.config import TrainConfig, TrainingError, config_differences

STATE_FILE = "state.json"
CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "logs"
PLOT_FILE = "history.png"
LAST_DIR = "last"
RUN_FORMAT = 1
# The options naming folders a run reads, with their TrainConfig fields: --out must keep apart.
INPUT_FOLDERS = (("--data", "data"), ("--valid-data", "valid_data"),
                 ("--init-from", "init_from"), ("--teacher", "teacher"))


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (atomic)."""
    write_json_atomic(path, data, indent=2)


def has_run(out: Path) -> bool:
    return (out / RUN_FILE).is_file()


BEST_STAGING = ".best.tmp"  # the next best weights, until the state naming them is written


def save_best(model, out: Path, config: dict) -> None:
    """Stage a new best model (config + weights) in ``out/.best.tmp``: it replaces the run
    folder's only by :func:`promote_best`, once the state that names it is committed, so a
    run stopped in between keeps the weights its state names."""
    from tinysep.models import save_model

    staging = out / BEST_STAGING
    if staging.exists():
        shutil.rmtree(staging)
    save_model(model, staging, config=config)


def promote_best(out: Path) -> None:
    """Move the staged best model into place (each file replaced atomically)."""
    from tinysep.models.registry import CONFIG_FILE, WEIGHTS_FILE

    staging = out / BEST_STAGING
    if not staging.is_dir():
        return
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        os.replace(staging / name, out / name)
    shutil.rmtree(staging)


def drop_staged_best(out: Path) -> None:
    """Forget a staged best model whose epoch was never committed."""
    shutil.rmtree(out / BEST_STAGING, ignore_errors=True)


def settle_staged_best(out: Path, state: dict) -> None:
    """A run killed between committing its state and promoting its best weights: promote
    them when the committed state names that epoch as best, else drop them."""
    if not (out / BEST_STAGING).is_dir():
        return
    if state.get("epoch") and state.get("best", {}).get("epoch") == state["epoch"]:
        promote_best(out)
    else:
        drop_staged_best(out)


def save_last(model, out: Path, config: dict, entry: dict) -> None:
    """Write ``out/last``: the weights the epoch's validation scored (the weight average, with
    one) as a model folder whose ``training.json`` names the run, the epoch and the run's
    corpora, so the last epoch is scored, souped and marked trained / held out like the best.
    The folder is replaced whole, so a kill leaves the previous epoch's."""
    from tinysep.models import save_model
    from tinysep.models.registry import CONFIG_FILE, WEIGHTS_FILE

    run = read_json(out / RUN_FILE, "the run record")
    record = {"run": str(out.resolve()), "command": run.get("command"),
              "epoch": entry["epoch"], "step": entry["step"], "valid_sdr": entry["valid_sdr"],
              "train_config": run.get("train_config"), "corpora": run.get("corpora")}
    with staged_folder(out / LAST_DIR, (CONFIG_FILE, WEIGHTS_FILE, TRAINING_FILE)) as folder:
        save_model(model, folder, config=config)
        write_json(folder / TRAINING_FILE, record)


def plot_history(history: list[dict], path: Path, title: str) -> None:
    """Training loss and validation SDR per epoch (PNG, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_sdr) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_loss.plot(epochs, [h["loss"] for h in history], marker=".")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_yscale("log" if all(h["loss"] > 0 for h in history) else "linear")
    keys = list(dict.fromkeys(k for h in history for k in h["valid_sdr"] if k != "mean"))
    for key in [*keys, "mean"]:
        values = [h["valid_sdr"].get(key) for h in history]
        if any(v is not None for v in values):
            ax_sdr.plot(epochs, [float("nan") if v is None else v for v in values],
                        marker=".", label=key)
    ax_sdr.set_xlabel("epoch")
    ax_sdr.set_ylabel("validation SDR (dB)")
    ax_sdr.legend()
    for ax in (ax_loss, ax_sdr):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def stored_config(out: str | Path) -> TrainConfig:
    """The training config of the run in ``out`` (to resume it or to repeat it), checked
    field by field, since a hand-edited value would otherwise fail deep in training."""
    out = Path(out)
    path = out / RUN_FILE
    if not has_run(out):
        raise FileNotFoundError(f"{path} is missing: {out} holds no training run")
    record = read_json(path, "not a training run folder")
    if not isinstance(record.get("train_config"), dict):
        raise ValueError(f"{path}: 'train_config' must be an object of training settings, got "
                         f"{record.get('train_config', 'nothing')!r}")
    config = TrainConfig.from_json(record["train_config"], str(path))
    try:
        config.validate()
    except ValueError as exc:
        raise ValueError(f"{path}: train_config: {exc}") from None
    return config


def versions() -> dict:
    import tensorflow as tf
    import tf_keras

    return {
        "tinysep": tinysep.__version__,
        "tensorflow": tf.__version__,
        "tf_keras": tf_keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def fresh_state() -> dict:
    return {
        "epoch": 0,
        "step": 0,
        "train_seconds": 0.0,
        "checkpoint": None,
        "best": {"epoch": None, "step": None, "valid_sdr": {}},
        "epochs_since_best": 0,
        "history": [],
        "status": "running",
        "stop_reason": None,
    }


def check_folder(config: TrainConfig, out: Path, resume: bool, allow_changes: bool) -> dict:
    """A fresh run needs a new or empty folder; a resumed one its run, with this config and
    a sound progress record. Either way ``out`` keeps apart from the folders the run reads.
    Writes nothing; returns the state to start from."""
    check_apart_from_inputs(config, out)
    if not resume:
        check_new_folder(out)
        return fresh_state()
    if not has_run(out):
        raise TrainingError(f"nothing to resume: {out / RUN_FILE} does not exist")
    diffs = config_differences(stored_config(out), config)
    if diffs and not allow_changes:
        raise TrainingError(
            f"cannot resume {out}: the config differs from the stored run ({'; '.join(diffs)}); "
            f"use the stored values, start a new run with another --out, or pass "
            f"--allow-config-change to resume anyway"
        )
    return read_state(out)


def check_apart_from_inputs(config: TrainConfig, out: Path) -> None:
    """Refuse an ``out`` that is, holds or lies inside a folder the run reads (its data,
    starting weights or teacher): the run's files would land among those."""
    for option, field_name in INPUT_FOLDERS:
        given = getattr(config, field_name)
        if not given:
            continue
        relation = nesting(out, given)
        if relation:
            raise TrainingError(f"--out {out} {relation} the {option} folder {given}: the run "
                                f"would write among the files it reads; choose another --out")


def check_new_folder(out: Path) -> None:
    """A fresh run writes into a new or empty folder only: files already there are the
    user's (or another run's) and must not be overwritten."""
    if has_run(out):
        raise TrainingError(f"{out} already holds a training run; pass --resume to continue "
                            f"it, or choose another --out")
    for folder in (out, *out.parents):
        if folder.exists():
            if not folder.is_dir():
                raise TrainingError(f"--out {out}: {folder} is a file, not a folder; choose "
                                    f"another --out")
            break
    names = sorted(entry.name for entry in out.iterdir()) if out.is_dir() else []
    if names:
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise TrainingError(f"--out {out} is not empty (it holds {shown}); a new run writes "
                            f"only into a new or empty folder: choose another --out")


def read_state(out: Path) -> dict:
    """The progress of the run in ``out``, checked field by field and with the checkpoint it
    names on disk, so that a resume fails before it writes anything."""
    path = out / STATE_FILE
    state = read_json(path, "the run's progress file")
    problem = _state_problem(state) or _checkpoint_problem(out, state["checkpoint"])
    if problem:
        raise TrainingError(f"cannot resume {out}: {path}: {problem}")
    return state


def _is_count(value) -> bool:
    return is_whole_number(value) and value >= 0


def _is_sdr_record(value) -> bool:
    """``{"vocals": dB or null, ..., "mean": dB or null}``."""
    return isinstance(value, dict) and all(v is None or is_finite_number(v)
                                           for v in value.values())


def _is_best(value) -> bool:
    return (isinstance(value, dict)
            and all(value.get(key) is None or _is_count(value[key]) for key in ("epoch", "step"))
            and _is_sdr_record(value.get("valid_sdr")))


def _is_history(value) -> bool:
    return isinstance(value, list) and all(
        isinstance(entry, dict) and _is_count(entry.get("epoch"))
        and is_finite_number(entry.get("loss")) and _is_sdr_record(entry.get("valid_sdr"))
        for entry in value)


# state.json field -> (test of its value, what is expected)
STATE_FIELDS = {
    "epoch": (_is_count, "a whole number >= 0"),
    "step": (_is_count, "a whole number >= 0"),
    "epochs_since_best": (_is_count, "a whole number >= 0"),
    "train_seconds": (lambda v: is_finite_number(v) and v >= 0, "a number of seconds >= 0"),
    "checkpoint": (lambda v: v is None or (isinstance(v, str) and bool(v)),
                   "a checkpoint path or null"),
    "best": (_is_best, 'an object {"epoch", "step", "valid_sdr": {source: dB}}'),
    "history": (_is_history, 'a list of epoch records {"epoch", "loss", "valid_sdr", ...}'),
    "status": (lambda v: isinstance(v, str), "a string"),
    "stop_reason": (lambda v: v is None or isinstance(v, str), "a string or null"),
}


def _state_problem(state: dict) -> str | None:
    """What is wrong with a progress record's fields (None: nothing)."""
    for key, (fits, expected) in STATE_FIELDS.items():
        if key not in state:
            return f"{key!r} is missing ({expected} expected)"
        if not fits(state[key]):
            return f"{key!r} must be {expected}, got {state[key]!r}"
    if state["checkpoint"] is None and (state["epoch"] or state["step"]):
        return (f"'checkpoint' is null, but {state['epoch']} epoch(s) and {state['step']} "
                f"steps are recorded as done")
    return None


def _checkpoint_problem(out: Path, name: str | None) -> str | None:
    """Whether the checkpoint a progress record names is in the run's checkpoint folder and
    on disk (None: it is, or the run has none yet)."""
    if name is None:
        return None
    path, folder = out / name, out / CHECKPOINT_DIR
    if not path.resolve().is_relative_to(folder.resolve()):
        return f"'checkpoint' {name!r} is not in {folder}"
    if not Path(f"{path}.index").is_file():
        return f"'checkpoint' names {path}, which is missing (no {path.name}.index)"
    return None


def prepare_folder(config: TrainConfig, out: Path, resume: bool, allow_changes: bool,
                    fingerprint: dict, command: str | None, model_info: dict,
                    state: dict) -> None:
    """Create the run folder with its record and ``state``, or record the resume in it."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    if not resume:
        out.mkdir(parents=True, exist_ok=True)
        record = {
            "format": RUN_FORMAT,
            "created": now,
            "command": command,
            "train_config": config.to_json(),
            "model_config": config.model_config(),
            "model": model_info,
            "data_fingerprint": fingerprint,
            "corpora": corpora(config),
            "versions": versions(),
            "resumes": [],
        }
        write_json(out / RUN_FILE, record)
        write_json(out / STATE_FILE, state)
        return
    write_json(out / RUN_FILE, _resumed_record(config, out, allow_changes, fingerprint,
                                               command, state, now))


def _resumed_record(config: TrainConfig, out: Path, allow_changes: bool, fingerprint: dict,
                    command: str | None, state: dict, now: str) -> dict:
    """The run record with this resume appended; raises before anything is written when
    the data or config differ without ``allow_changes``."""
    path = out / RUN_FILE
    record = read_json(path, "not a training run folder")
    stored = stored_config(out)
    before = record.get("data_fingerprint")
    stored_sha = before.get("sha256") if isinstance(before, dict) else None
    data_diff = []
    if stored_sha != fingerprint["sha256"]:
        data_diff.append(f"data fingerprint: stored {stored_sha}, given "
                         f"{fingerprint['sha256']} (the clips in {config.data} differ)")
    diffs = config_differences(stored, config) + data_diff
    if diffs and not allow_changes:
        raise TrainingError(f"cannot resume {out}: {'; '.join(diffs)}; pass "
                            f"--allow-config-change to resume anyway")
    resumes = record.get("resumes", [])
    if not isinstance(resumes, list):
        raise ValueError(f"{path}: 'resumes' must be a list, got {resumes!r}")
    changes = config_differences(stored, config, allowed=frozenset()) + data_diff
    record["resumes"] = [*resumes, {"at": now, "command": command, "epoch": state["epoch"],
                                    "step": state["step"], "changes": changes}]
    record["train_config"] = config.to_json()
    record["data_fingerprint"] = fingerprint
    earlier = record.get("corpora")
    record["corpora"] = corpora(config, earlier if isinstance(earlier, dict) else None)
    return record


@contextlib.contextmanager
def removed_if_setup_fails(out: Path, resume: bool):
    """Remove what a fresh run wrote into ``out`` when setting it up fails, so that a
    refused run leaves no half-made folder (:func:`check_new_folder` made sure ``out`` was
    new or empty); a resumed run's folder is the user's and stays."""
    created = None if resume else _outermost_missing(out)
    try:
        yield
    except BaseException:
        if not resume:
            _remove_new_files(out, created)
        raise


def _outermost_missing(out: Path) -> Path | None:
    """The outermost of ``out`` and its parents that does not exist (None: ``out`` does)."""
    missing = None
    for folder in (out, *out.parents):
        if folder.exists():
            break
        missing = folder
    return missing


def _remove_new_files(out: Path, created: Path | None) -> None:
    """Delete the folders made for ``out`` (``created``), or the entries of ``out``, which
    was empty before the run."""
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)
        return
    if not out.is_dir():
        return
    for entry in out.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def corpora(config: TrainConfig, before: dict | None = None) -> dict:
    """The folders (and music engines) the run trains and selects on; a resume on other
    corpora keeps the ones ``before`` under ``earlier``, since the weights learnt from them,
    and so do a teacher's corpora (its separations are what the run learns from) and those
    the ``init_from`` model recorded (the run starts from what that model learnt)."""
    from tinysep.metrics.by_engine import recorded_corpora
    from tinysep.training.data import corpus_record

    now = {"train": corpus_record(config.data, "train"),
           "valid": corpus_record(config.valid_data or config.data, "valid")}
    inherited = [before or {}, trained_corpora(config.teacher) if config.teacher else {},
                 (recorded_corpora(config.init_from) or {}) if config.init_from else {}]
    for split, record in now.items():
        earlier = [c for c in corpus_history(*(s.get(split) for s in inherited)) if c != record]
        if earlier:
            record["earlier"] = earlier
    return now


def corpus_history(*records: dict | None) -> list[dict]:
    """Every corpus under ``records`` (one split's corpus records, each with its own
    ``earlier``), the earlier ones first, each once: what a model made from them has heard."""
    found: list[dict] = []
    for record in records:
        record = dict(record or {})
        for corpus in [*record.pop("earlier", []), record]:
            if corpus and corpus not in found:
                found.append(corpus)
    return found


def trained_corpora(folder: str | Path) -> dict:
    """The corpora recorded in a model folder whose music another model inherits (a teacher,
    a soup's ingredient); a folder that records none is an error, since the engines the
    other model has heard would then be unknown."""
    from tinysep.metrics.by_engine import recorded_corpora

    record = recorded_corpora(folder)
    if not record or not record.get("train"):
        raise ValueError(f"{folder}: its run.json or training.json records no training "
                         f"corpora ('corpora'), so the engines it heard are unknown")
    return record
