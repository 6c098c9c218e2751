"""A training run folder: its files, written atomically so that a kill leaves them whole, the
run record (``run.json``: config, data, versions, resumes) and the progress (``state.json``).

::

    OUT/config.json, OUT/model.weights.h5   best weights so far (tinysep.models.load_model)
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

import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np

import tinysep
from tinysep.jsonfile import read_json, write_json_atomic
from tinysep.training.config import TrainConfig, TrainingError, config_differences

RUN_FILE = "run.json"
STATE_FILE = "state.json"
CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "logs"
PLOT_FILE = "history.png"
RUN_FORMAT = 1


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (atomic)."""
    write_json_atomic(path, data, indent=2)


def has_run(out: Path) -> bool:
    return (out / RUN_FILE).is_file()


def has_checkpoint(out: Path) -> bool:
    """True once the run in ``out`` has saved weights to resume from (an epoch finished)."""
    state = read_json(out / STATE_FILE, "the run's progress file")
    return bool(state.get("checkpoint"))


def save_best(model, out: Path, config: dict) -> None:
    """Write the model folder (config + weights) into ``out``, replacing files atomically."""
    from tinysep.models import save_model
    from tinysep.models.registry import CONFIG_FILE, WEIGHTS_FILE

    staging = out / ".best.tmp"
    if staging.exists():
        shutil.rmtree(staging)
    save_model(model, staging, config=config)
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        os.replace(staging / name, out / name)
    shutil.rmtree(staging)


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
    """The training config of the run in ``out`` (to resume it or to repeat it)."""
    out = Path(out)
    if not has_run(out):
        raise FileNotFoundError(f"{out / RUN_FILE} is missing: {out} holds no training run")
    record = read_json(out / RUN_FILE, "not a training run folder")
    if "train_config" not in record:
        raise ValueError(f"{out / RUN_FILE}: no 'train_config' object")
    return TrainConfig.from_json(record["train_config"], str(out / RUN_FILE))


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


def check_folder(config: TrainConfig, out: Path, resume: bool, allow_changes: bool) -> None:
    """A fresh run needs a folder without a run; a resumed one its run, with this config."""
    if not resume:
        if has_run(out):
            raise TrainingError(f"{out} already holds a training run; pass --resume to continue "
                                f"it, or choose another --out")
        return
    if not has_run(out):
        raise TrainingError(f"nothing to resume: {out / RUN_FILE} does not exist")
    diffs = config_differences(stored_config(out), config)
    if diffs and not allow_changes:
        raise TrainingError(
            f"cannot resume {out}: the config differs from the stored run ({'; '.join(diffs)}); "
            f"use the stored values, start a new run with another --out, or pass "
            f"--allow-config-change to resume anyway"
        )


def prepare_folder(config: TrainConfig, out: Path, resume: bool, allow_changes: bool,
                    fingerprint: dict, command: str | None, model_info: dict) -> dict:
    """Create the run folder, or record the resume in it; returns the state to start from."""
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
        state = fresh_state()
        write_json(out / STATE_FILE, state)
        return state

    record = read_json(out / RUN_FILE, "not a training run folder")
    stored = stored_config(out)
    data_diff = []
    if record.get("data_fingerprint", {}).get("sha256") != fingerprint["sha256"]:
        data_diff.append(f"data fingerprint: stored "
                         f"{record.get('data_fingerprint', {}).get('sha256')}, given "
                         f"{fingerprint['sha256']} (the clips in {config.data} differ)")
    diffs = config_differences(stored, config) + data_diff
    if diffs and not allow_changes:
        raise TrainingError(f"cannot resume {out}: {'; '.join(diffs)}; pass "
                            f"--allow-config-change to resume anyway")
    state = read_json(out / STATE_FILE, "the run's progress file")
    changes = config_differences(stored, config, allowed=frozenset()) + data_diff
    record["resumes"].append({"at": now, "command": command, "epoch": state["epoch"],
                              "step": state["step"], "changes": changes})
    record["train_config"] = config.to_json()
    record["data_fingerprint"] = fingerprint
    record["corpora"] = corpora(config, record.get("corpora"))
    write_json(out / RUN_FILE, record)
    return state


def corpora(config: TrainConfig, before: dict | None = None) -> dict:
    """The folders (and music engines) the run trains and selects on; a resume on other
    corpora keeps the ones ``before`` under ``earlier``, since the weights learnt from them,
    and so does a teacher's corpora: its separations are what the run learns from."""
    from tinysep.training.data import corpus_record

    now = {"train": corpus_record(config.data, "train"),
           "valid": corpus_record(config.valid_data or config.data, "valid")}
    taught = trained_corpora(config.teacher) if config.teacher else {}
    for split, record in now.items():
        old = dict((before or {}).get(split) or {})
        earlier = old.pop("earlier", [])
        if old and old != record:
            earlier = [*earlier, old]
        theirs = dict(taught.get(split) or {})
        for corpus in [*theirs.pop("earlier", []), theirs]:
            if corpus and corpus not in earlier and corpus != record:
                earlier = [*earlier, corpus]
        if earlier:
            record["earlier"] = earlier
    return now


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
