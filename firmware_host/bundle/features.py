"""The model's input features from STFT frames, one implementation for the board and the
host: ``|X|`` in float64 rounded to float32, then the manifest's transform. ``log1p`` takes
``gain * |X|`` in float32 and is evaluated in float64, rounded to float32, so that every numpy
on every board gives the same bits. With ``pool_above`` the bins from that index up are then
averaged in pairs, ``(a + b) / 2`` in float32 (what Keras' ``AveragePooling2D`` computes), and
the model gives one mask per pair, which :func:`spread_pairs` copies to both of its bins.
numpy only, Python 3.7.
"""

from __future__ import annotations

import numpy as np

TRANSFORMS = ("log1p", "none")


def magnitude(spectra: np.ndarray) -> np.ndarray:
    """|X| of complex spectra as float32 (float64 math: the same on every numpy)."""
    real = spectra.real.astype(np.float64)
    imag = spectra.imag.astype(np.float64)
    return np.sqrt(real * real + imag * imag).astype(np.float32)


def input_features(magnitudes: np.ndarray, kind: str, gain: float = 1.0,
                   pool_above: int = 0) -> np.ndarray:
    """The model input for float32 magnitudes ``(..., bins)``: ``log1p(gain * |X|)`` or
    ``|X|`` itself, then with ``pool_above`` the bins from it up averaged in pairs."""
    mag = np.asarray(magnitudes, dtype=np.float32)
    if kind == "none":
        features = mag
    elif kind == "log1p":
        scaled = np.float32(gain) * mag
        features = np.log1p(scaled.astype(np.float64)).astype(np.float32)
    else:
        raise ValueError(f"input transform {kind!r} is unknown; known: {TRANSFORMS}")
    return pool_pairs(features, pool_above)


def pooled_count(n_bins: int, pool_above: int) -> int:
    """Model input features (and mask positions) per frame: every bin, or with
    ``pool_above`` the bins below it and one per pair of bins from it on."""
    return pool_above + (n_bins - pool_above) // 2 if pool_above else n_bins


def pool_pairs(features: np.ndarray, pool_above: int) -> np.ndarray:
    """``(..., bins)`` float32 -> ``(..., pooled_count)``: bins ``>= pool_above`` averaged in
    pairs (``(f[b] + f[b + 1]) / 2`` in float32); unchanged when ``pool_above`` is 0."""
    features = np.asarray(features, dtype=np.float32)
    if not pool_above:
        return features
    upper = features[..., pool_above:]
    pairs = (upper[..., 0::2] + upper[..., 1::2]) / np.float32(2.0)
    return np.concatenate((features[..., :pool_above], pairs.astype(np.float32)), axis=-1)


def spread_pairs(masks: np.ndarray, pool_above: int) -> np.ndarray:
    """Masks ``(..., positions, S)`` -> ``(..., bins, S)``: each pair's masks on both of its
    bins; unchanged when ``pool_above`` is 0."""
    masks = np.asarray(masks)
    if not pool_above:
        return masks
    upper = np.repeat(masks[..., pool_above:, :], 2, axis=-2)
    return np.concatenate((masks[..., :pool_above, :], upper), axis=-2)
