"""What the training tests share: a dualgate-tcn small enough to trace and step in well under
a second, and a training config of a few such steps on a small corpus."""

from __future__ import annotations

from pathlib import Path

from tinysep.train import TrainConfig

TINY = {"residual": 6, "hidden": 6, "blocks": 2, "repeats": 1, "se_window": 2}


def tiny_config(corpus: Path, **changes) -> TrainConfig:
    """Two epochs of three steps of the TINY model on ``corpus``, with ``changes``."""
    base = TrainConfig(model="dualgate-tcn", preset="tiny", options=dict(TINY), data=str(corpus),
                       epochs=2, steps_per_epoch=3, batch_size=4, chunk_seconds=0.5,
                       valid_clips=1, valid_seconds=2.0, seed=5)
    return base.replace(**changes)
