"""Training losses on masked magnitudes (the spectral form of paper 2's L1 loss)."""

from __future__ import annotations

import tensorflow as tf


def masked_magnitudes(mixture_magnitude, masks):
    """Source magnitudes ``(B, T, F, S)`` = masks ``(B, T, F, S)`` x mixture ``(B, T, F)``."""
    return masks * mixture_magnitude[..., tf.newaxis]


def chunk_magnitude_l1(mixture_magnitude, target_magnitudes, masks):
    """``(B,)``: each chunk's mean absolute error between masked mixture and reference
    magnitudes ``(B, T, F, S)``."""
    estimate = masked_magnitudes(mixture_magnitude, masks)
    return tf.reduce_mean(tf.abs(estimate - target_magnitudes), axis=[1, 2, 3])


def magnitude_l1(mixture_magnitude, target_magnitudes, masks):
    """Mean absolute error between masked mixture and reference magnitudes ``(B, T, F, S)``
    (every chunk has as many values, so the mean of :func:`chunk_magnitude_l1`)."""
    return tf.reduce_mean(chunk_magnitude_l1(mixture_magnitude, target_magnitudes, masks))
