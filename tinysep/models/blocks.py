"""Blocks shared by the separators: normalisation, frequency squeeze-excitation, mask head.

All of them work frame by frame (no statistics over time), so they are identical in the
whole-clip and the streaming graph.
"""

from __future__ import annotations

import tf_keras as keras

from firmware_host.bundle.layout import DEFAULT_FRAMING, Framing, get_framing
from tinysep.data.sources import check_sources
from tinysep.models.causal import conv1x1
from tinysep.models.layers import AppendZero, FrameGroupNorm, ReduceMean

L = keras.layers

NORMS = ("group", "batch", "none")
MASK_ACTIVATIONS = ("softmax", "sigmoid", "anchored")
# The largest width, kernel or count an option may take: a graph beyond it would not fit the
# memory of the machines the kit trains on, long before any budget check could say so.
MAX_OPTION_INT = 4096


def check_int_options(params: dict, keys, minimum: int = 1,
                      maximum: int = MAX_OPTION_INT) -> None:
    """Raise ValueError naming the first of ``keys`` that is not a whole number (a bool is
    not) in ``[minimum, maximum]``."""
    for key in keys:
        value = params[key]
        if not isinstance(value, int) or isinstance(value, bool) or not (
                minimum <= value <= maximum):
            raise ValueError(f"{key} must be a whole number from {minimum} to {maximum}, "
                             f"got {value!r}")


def check_flag_options(params: dict, keys) -> None:
    """Raise ValueError naming the first of ``keys`` that is not true or false."""
    for key in keys:
        if not isinstance(params[key], bool):
            raise ValueError(f"{key} must be true or false, got {params[key]!r}")


def check_sources_param(params: dict) -> None:
    """Raise ValueError unless ``params["sources"]`` is a valid source set (see
    :func:`tinysep.data.sources.check_sources`)."""
    check_sources(params["sources"], "sources")


def params_framing(params: dict) -> Framing:
    """The STFT framing a model's parameters name (``framing``; the default when absent)."""
    return get_framing(params.get("framing", DEFAULT_FRAMING))


def params_bins(params: dict) -> int:
    """Bins of the spectra a model with these parameters sees (and masks)."""
    return params_framing(params).n_bins


def _groups_for(channels: int, wanted: int) -> int:
    """Largest group count <= ``wanted`` that divides ``channels``."""
    for g in range(min(wanted, channels), 0, -1):
        if channels % g == 0:
            return g
    return 1


def norm(x, kind: str, name: str, groups: int = 4):
    """``group``: per-frame GroupNorm; ``batch``: BatchNorm (folds into the conv before
    it at export); ``none``: identity."""
    if kind == "batch":
        return L.BatchNormalization(axis=-1, name=name)(x)
    if kind == "group":
        return FrameGroupNorm(_groups_for(int(x.shape[-1]), groups), name=name)(x)
    if kind == "none":
        return x
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


def norm_relu(x, kind: str, name: str, groups: int = 4):
    """Normalisation then ReLU (the ReLU fuses into the conv/add before it in TFLite)."""
    return L.Activation("relu", name=f"{name}_relu")(norm(x, kind, name, groups))


def squeeze_excite_frequency(x, name: str, reduction: int):
    """1-D squeeze-excitation whose squeeze is the mean over frequency positions of the
    current frame (causal), then two 1x1 convs and a sigmoid that rescale the channels."""
    channels = int(x.shape[-1])
    s = ReduceMean(axis=2, name=f"{name}_squeeze")(x)
    s = conv1x1(s, max(1, channels // reduction), f"{name}_reduce", activation="relu")
    s = conv1x1(s, channels, f"{name}_excite", activation="sigmoid")
    return L.Multiply(name=f"{name}_scale")([x, s])


def mask_logit_count(n_sources: int, activation: str) -> int:
    """Logits per bin :func:`mask_head` needs (it checks ``activation``): ``anchored``
    fixes the last source's at zero."""
    return n_sources - 1 if activation == "anchored" else n_sources


def mask_head(logits, n_bins: int, activation: str):
    """``(batch, time, bins, sources)`` masks in [0, 1], sources on the last axis.

    ``softmax`` makes the masks sum to one (the estimates add up to the mixture);
    ``anchored`` gives the same masks from one logit fewer per bin (the last source's
    logit is zero: a softmax ignores an offset shared by all logits, so nothing is lost
    and the mask projection shrinks by one source); ``sigmoid`` lets each source take any
    share.
    """
    if activation not in MASK_ACTIVATIONS:
        raise ValueError(f"mask must be one of {MASK_ACTIVATIONS}, got {activation!r}")
    if activation == "anchored":
        logits = AppendZero(name="anchor_logit")(logits)
    if activation in ("softmax", "anchored"):
        return L.Softmax(axis=-1, name="masks")(logits)
    return L.Activation("sigmoid", name="masks")(logits)


def anchor_logits(kernel, bias, n_sources: int):
    """Weights of a projection to ``bins x n_sources`` logits (source fastest) turned into
    the anchored projection with the same masks: every logit minus the last source's."""
    def anchored(w):
        grouped = w.reshape(w.shape[:-1] + (-1, n_sources))
        return (grouped[..., :-1] - grouped[..., -1:]).reshape(w.shape[:-1] + (-1,))

    return anchored(kernel), anchored(bias)
