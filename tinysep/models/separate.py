"""Whole-clip separation with a Keras separator: STFT -> masks -> iSTFT (mixture phase)."""

from __future__ import annotations

import numpy as np
import tf_keras as keras

from tinysep.dsp import istft, magnitude, stft
from tinysep.models.registry import mask_delay_frames, model_framing, model_sources


def predict_masks(model: keras.Model, mixture_magnitude: np.ndarray) -> np.ndarray:
    """Masks ``(T, bins, S)`` for a magnitude spectrogram ``(T, bins)`` (the bins of the
    model's framing), S the model's sources.

    A model with a look ahead (``mask_delay``) is fed that many silent frames after the
    clip, and its masks are moved back onto the frames they belong to."""
    mag = np.asarray(mixture_magnitude, np.float32)
    bins = model_framing(model).n_bins
    if mag.ndim != 2 or mag.shape[1] != bins:
        raise ValueError(f"mixture magnitude must have shape (frames, {bins}), got {mag.shape}")
    delay = mask_delay_frames(model)
    fed = np.concatenate([mag, np.zeros((delay, bins), np.float32)]) if delay else mag
    masks = np.asarray(model(fed[None], training=False))[0][delay:]
    sources = model_sources(model)
    if masks.shape != (*mag.shape, len(sources)):
        raise ValueError(
            f"model {model.name!r} returned masks of shape {masks.shape}, "
            f"expected {(*mag.shape, len(sources))} (sources {', '.join(sources)})"
        )
    return masks


def separate(model: keras.Model, mixture: np.ndarray) -> dict[str, np.ndarray]:
    """Estimate every source of the model (``{"vocals", "accompaniment"}`` by default;
    float32, the mixture's length) from a mono mixture."""
    audio = np.asarray(mixture, np.float32)
    if audio.ndim != 1 or audio.size == 0:
        raise ValueError(
            f"mixture must be non-empty mono audio (samples,), got shape {audio.shape}"
        )
    framing = model_framing(model)
    spec = stft(audio, framing=framing)
    masks = predict_masks(model, magnitude(spec))
    return {
        source: istft(spec * masks[..., i], length=len(audio), framing=framing)
        for i, source in enumerate(model_sources(model))
    }
