"""Carry a trained model's weights to another framing or pooling of its bins.

A model that sees its frames on other features (a longer analysis window, more bins, bins
pooled in pairs) keeps every layer between its input and mask projections; only the layers
that run over the features change size. Their weights are read off at each new feature's
place on the frequency axis (linear interpolation between the old features), and a
projection that adds the features up is scaled by the new features' width against the old
ones', so twice as many features carrying the same spectrum give the same sum. The input
normalisation's running statistics are then measured again on mixtures through the new
framing (:func:`refit_input_norm`): a longer window gives larger magnitudes.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import tf_keras as keras

from tinysep.dsp import magnitude, stft
from tinysep.models.blocks import params_framing

INPUT_NORM = "input_norm"  # the per-feature normalisation every framed model starts with


def feature_layout(params: dict) -> tuple[str, int]:
    """What decides the features a model sees: its framing and its first pooled bin."""
    return params_framing(params).name, int(params.get("pool_above", 0) or 0)


def feature_places(params: dict) -> tuple[np.ndarray, np.ndarray]:
    """Each feature's centre and width on the frequency axis, in cycles per sample: a bin's,
    or a pooled pair's (midway between its two bins, twice as wide)."""
    framing = params_framing(params)
    bins, pool = framing.n_bins, feature_layout(params)[1]
    step = 1.0 / framing.n_fft
    fine = np.arange(pool if pool else bins, dtype=np.float64)
    centres, widths = [fine * step], [np.full(len(fine), step)]
    if pool:
        pairs = (bins - pool) // 2
        centres.append((pool + 0.5 + 2 * np.arange(pairs)) * step)
        widths.append(np.full(pairs, 2 * step))
    return np.concatenate(centres), np.concatenate(widths)


def resample_features(values: np.ndarray, axis: int, theirs: dict, ours: dict,
                      summed: bool = False) -> np.ndarray:
    """``values`` along ``axis`` given at ``theirs``' features -> at ``ours``' features.
    ``summed``: the values weight features that are added up, so each is scaled by its new
    width over the old width at its place."""
    their_centres, their_widths = feature_places(theirs)
    our_centres, our_widths = feature_places(ours)
    moved = np.moveaxis(np.asarray(values, dtype=np.float64), axis, -1)
    if moved.shape[-1] != len(their_centres):
        raise ValueError(f"{moved.shape[-1]} values along axis {axis}, but the source model "
                         f"sees {len(their_centres)} features")
    rows = moved.reshape(-1, moved.shape[-1])
    out = np.stack([np.interp(our_centres, their_centres, row) for row in rows])
    if summed:
        out *= our_widths / np.interp(our_centres, their_centres, their_widths)
    out = out.reshape(*moved.shape[:-1], len(our_centres))
    return np.moveaxis(out, -1, axis).astype(np.asarray(values).dtype)


def resample_logits(values: np.ndarray, logits: int, theirs: dict, ours: dict) -> np.ndarray:
    """A projection's weights to ``features x logits`` outputs (logit fastest on the last
    axis) -> the same for ``ours``' features."""
    values = np.asarray(values)
    if values.shape[-1] % logits:
        raise ValueError(f"{values.shape[-1]} outputs are not {logits} logits per feature")
    grouped = values.reshape(values.shape[:-1] + (-1, logits))
    out = resample_features(grouped, grouped.ndim - 2, theirs, ours)
    return out.reshape(values.shape[:-1] + (-1,))


def input_norm_features(model: keras.Model) -> keras.Model:
    """``model``'s path from magnitudes to what its input normalisation sees."""
    return keras.Model(model.input, model.get_layer(INPUT_NORM).input)


def refit_input_norm(model: keras.Model, mixtures: Iterable[np.ndarray]) -> int:
    """Set the running mean and variance of ``model``'s input normalisation to those of its
    features over ``mixtures`` (mono waveforms) through its own framing; returns the frames
    measured. Its learnt scale and offset stay."""
    framing = params_framing(model.tinysep_config["params"])
    features = input_norm_features(model)
    count, total, squares = 0, 0.0, 0.0
    for mixture in mixtures:
        mags = magnitude(stft(mixture, framing=framing))[None]
        seen = np.asarray(features(mags, training=False), dtype=np.float64)
        seen = seen.reshape(-1, seen.shape[-1])
        count += len(seen)
        total = total + seen.sum(axis=0)
        squares = squares + (seen**2).sum(axis=0)
    if not count:
        raise ValueError("refit_input_norm needs at least one mixture of at least one frame")
    mean = total / count
    variance = np.maximum(squares / count - mean**2, 0.0)
    norm = model.get_layer(INPUT_NORM)
    gamma, beta, _, _ = norm.get_weights()
    norm.set_weights([gamma, beta, mean.astype(np.float32), variance.astype(np.float32)])
    return count
