"""Deploy bundles for the board-agent and HIL tests (no tests here).

``make_bundle`` saves a small untrained separator and exports it with
``convert.export.export_bundle`` (full int8, calibrated on two short synthetic songs), so the
agent is tested on what the exporter really writes. Bundles are cached per process by their
options: a test session exports each one once.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

SMALL_TCN = {"residual": 8, "hidden": 16, "blocks": 2, "repeats": 1}

_CACHE: dict = {}
_ROOT = Path(tempfile.mkdtemp(prefix="tinysep-test-bundles-"))


def calibration_clips(count: int = 2, seconds: float = 3.0) -> list:
    """Short synthetic songs (vocals over accompaniment at 0 dB) for int8 calibration."""
    from tinysep.data.synth import synthetic_clips

    return synthetic_clips(count, seconds, seed=5)


def make_bundle(
    name: str = "dualgate-tcn",
    options: dict | None = None,
    frames_per_invoke: int = 1,
    float_model: bool = False,
    seed: int = 7,
    train_steps: int = 0,
):
    """Path of a cached bundle folder (and the float model folder when ``float_model``).

    ``seed`` sets the initial weights: two seeds give models with the same tensor layout
    and different weights and scales (a retrained model). ``train_steps`` fits the model
    on the calibration songs for that many batches first (BatchNorm statistics included).
    """
    options = dict(SMALL_TCN if options is None else options)
    key = json.dumps([name, options, frames_per_invoke, seed, train_steps], sort_keys=True)
    if key not in _CACHE:
        import tensorflow as tf

        from convert.export import export_bundle
        from tinysep.models import build_model, save_model

        tag = hashlib.sha256(key.encode()).hexdigest()[:10]
        bundle = _ROOT / f"bundle-{tag}"
        model_dir = _ROOT / f"model-{tag}"
        tf.keras.utils.set_random_seed(seed)
        model = build_model(name, "tiny", **options)
        if train_steps:
            from convert.finetune import fine_tune

            fine_tune(model, calibration_clips(), train_steps, batch_size=2, chunk_frames=24,
                      seed=seed, freeze_batchnorm=False)
        save_model(model, model_dir)
        export_bundle(
            model_dir,
            bundle,
            frames_per_invoke=frames_per_invoke,
            calibration=calibration_clips(),
            calibration_frames=128,
            edgetpu_compile=False,
            progress=False,
        )
        _CACHE[key] = (bundle, model_dir)
    bundle, model_dir = _CACHE[key]
    return (bundle, model_dir) if float_model else bundle


def copy_bundle(source: Path, target: Path) -> Path:
    """A private copy of a cached bundle (for tests that upload into it or damage it)."""
    shutil.copytree(source, target)
    return target
