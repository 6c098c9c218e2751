"""Short training runs on clips in memory: fine-tuning after pruning, quantization-aware
training, and the small fitted models the tests need.

Batches are augmented chunks (:func:`tinysep.data.augment.training_batches`) turned into
STFT magnitudes; the loss is the L1 distance between masked mixture magnitudes and the
reference magnitudes (:func:`tinysep.models.magnitude_l1`). Uses ``model.fit`` so that
tfmot's callbacks (the pruning step) run as they expect.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from tinysep.data.clip import Clip
from tinysep.dsp import HOP_SAMPLES, N_FFT


def magnitude_batches(
    clips: Sequence[Clip], chunk_frames: int, batch_size: int, seed: int = 0, **augment
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless ``(mixture magnitude (B, T, 257), packed target (B, T, 257, 3))``: the target
    holds the mixture, vocals and accompaniment magnitudes on its last axis."""
    from tinysep.data.augment import training_batches
    from tinysep.dsp import magnitude, stft

    if not clips:
        raise ValueError("training needs at least one clip")
    samples = (chunk_frames - (N_FFT // HOP_SAMPLES - 1)) * HOP_SAMPLES
    if samples < HOP_SAMPLES:
        raise ValueError(f"chunk_frames must be at least {N_FFT // HOP_SAMPLES}")
    rng = np.random.default_rng(seed)
    for mixture, vocals, accompaniment in training_batches(
        clips, samples, batch_size, rng, **augment
    ):
        mags = [
            np.stack([magnitude(stft(x)) for x in rows])
            for rows in (mixture, vocals, accompaniment)
        ]
        yield mags[0], np.stack(mags, axis=-1)


def packed_l1(target, masks):
    """L1 loss on masked magnitudes, the target packed as by :func:`magnitude_batches`."""
    from tinysep.models import magnitude_l1

    return magnitude_l1(target[..., 0], target[..., 1:], masks)


def fine_tune(
    model,
    clips: Sequence[Clip],
    steps: int,
    *,
    batch_size: int = 4,
    chunk_frames: int = 64,
    learning_rate: float = 1e-3,
    callbacks: Sequence = (),
    seed: int = 0,
    progress: bool = False,
) -> list[float]:
    """Train ``model`` (whole-clip, magnitudes -> masks) for ``steps`` batches; returns the
    loss of every step."""
    import tf_keras as keras

    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    batches = magnitude_batches(clips, chunk_frames, batch_size, seed)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=packed_l1)
    losses: list[float] = []

    class _Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            losses.append(float((logs or {}).get("loss", np.nan)))

    model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=1 if progress else 0,
              callbacks=[*callbacks, _Record()])
    return losses
