"""What the evaluation tests share: a small corpus of two engines and an untrained, tiny
dualgate-tcn saved as a model folder."""

from __future__ import annotations

import json
from pathlib import Path


def write_engine_corpus(root: Path, songs: int, seed: int) -> Path:
    """``songs`` 4-second songs of the additive and physical engines under ``root``."""
    from tinysep.data.synth import write_corpus

    write_corpus(root, songs=songs, seconds=4.0, seed=seed, progress=False,
                 engines="additive,physical")
    return root


def save_tiny_model(folder: Path, seed: int, trained: dict | None = None) -> Path:
    """An untrained dualgate-tcn of a few hundred weights in ``folder``; with ``trained``
    (role -> engines), a ``run.json`` that records it trained and was selected on them."""
    import tensorflow as tf

    from tinysep.models import build_model, save_model

    tf.keras.utils.set_random_seed(seed)
    save_model(build_model("dualgate-tcn", "tiny", residual=8, hidden=8, blocks=2, repeats=1),
               folder)
    if trained is not None:
        (folder / "run.json").write_text(json.dumps(
            {"corpora": {"train": {"engines": trained}, "valid": {"engines": trained}}}))
    return folder
