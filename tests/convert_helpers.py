"""Shared, cached inputs of the convert/ and calibration/ tests: a tiny synthetic corpus on
disk and small separators fitted on it for a few hundred steps (so that quantization
error is that of a model that separates, not of random weights). Built once per test
process, removed at exit."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np

SMALL = {
    "dualgate-tcn": {"residual": 16, "hidden": 32, "blocks": 4, "repeats": 1},
    "unet-se-sru": {"channels": [8, 16], "units": 16},
}
FIT_STEPS = {"dualgate-tcn": 150, "unet-se-sru": 100}
FIT_SEED = 7  # initial weights of the fitted models: the same whatever ran before in the process


@functools.cache
def workdir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="tinysep-convert-tests-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@functools.cache
def corpus() -> Path:
    """A 4-song synthetic corpus (3 train clips, 1 test clip of 6 s)."""
    from tinysep.data.synth import write_corpus

    root = workdir() / "corpus"
    write_corpus(root, songs=4, seconds=6.0, seed=3, progress=False)
    return root


@functools.cache
def clips(split: str = "train") -> tuple:
    from tinysep.data.loaders import load_split

    return tuple(load_split(corpus(), split=split, progress=False))


@functools.cache
def fitted_model_folder(name: str, **extra) -> Path:
    """Folder of a small ``name`` model fitted on the train clips (config.json + weights)."""
    import tensorflow as tf

    from convert.finetune import fine_tune
    from tinysep.models import build_model, save_model

    tf.keras.utils.set_random_seed(FIT_SEED)
    model = build_model(name, **{**SMALL[name], **extra})
    fine_tune(model, list(clips("train")), FIT_STEPS[name], chunk_frames=32, seed=1,
              freeze_batchnorm=False)  # from scratch: BatchNorm learns its statistics
    suffix = "-".join(f"{k}{v}" for k, v in sorted(extra.items()))
    return save_model(model, workdir() / f"model-{name}{suffix}")


def load(name: str, **extra):
    from tinysep.models import load_model

    return load_model(fitted_model_folder(name, **extra))


def held_out_features(frames: int = 200) -> np.ndarray:
    """Compressed magnitudes of the test clip (the model's streaming input)."""
    from tinysep.dsp import magnitude, stft
    from tinysep.models import compress_magnitude

    clip = clips("test")[0]
    return compress_magnitude(magnitude(stft(clip.mixture)), 100.0)[:frames]
