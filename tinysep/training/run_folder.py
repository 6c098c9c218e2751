"""The files of a training run folder, written atomically so that a kill leaves them whole.

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

import json
import os
import shutil
from pathlib import Path

from tinysep.jsonfile import write_json_atomic

RUN_FILE = "run.json"
STATE_FILE = "state.json"
CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "logs"
PLOT_FILE = "history.png"


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (atomic)."""
    write_json_atomic(path, data, indent=2)


def read_json(path: Path, what: str) -> dict:
    """A JSON object from ``path``, with an error naming the file if it is missing or bad."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {what}")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not readable JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def has_run(out: Path) -> bool:
    return (out / RUN_FILE).is_file()


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
    for key in ("vocals", "accompaniment", "mean"):
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
