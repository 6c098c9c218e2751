"""Trained models shipped with the kit, so the main job runs without training first.

``dualgate-tcn-tiny/`` is a saved model folder (``config.json`` + ``model.weights.h5``,
readable by :func:`tinysep.models.load_model` and ``tinysep eval --method model:PATH``)
plus ``training.json``: the command that trained it, how long it took and its
test-split SDRs.
"""

from __future__ import annotations

import json
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL = "dualgate-tcn-tiny"
TRAINING_FILE = "training.json"


def available() -> list[str]:
    """Names of the shipped model folders."""
    return sorted(p.name for p in PACKAGE_DIR.iterdir() if (p / "config.json").is_file())


def model_path(name: str = DEFAULT_MODEL) -> Path:
    """The folder of the shipped model ``name`` (error listing the shipped ones if absent)."""
    folder = PACKAGE_DIR / name
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"no shipped model {name!r} in {PACKAGE_DIR}; "
                                f"shipped: {available() or 'none'}")
    return folder


def default_model_path() -> Path:
    """The folder of the default shipped model: the trained ``tiny`` ``dualgate-tcn``."""
    return model_path(DEFAULT_MODEL)


def training_record(name: str = DEFAULT_MODEL) -> dict:
    """The ``training.json`` of a shipped model: command, training time, test SDRs."""
    return json.loads((model_path(name) / TRAINING_FILE).read_text())
