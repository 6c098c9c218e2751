"""``unet-se-sru``: U-Net encoder/decoder with 1-D squeeze-excitation, GroupNorm and a
simple-recurrent-unit bottleneck (paper 2), here on the STFT magnitude, not the waveform.

Why spectral: (1) the board contract (DESIGN.md) is STFT frames in, masks out, one
128-sample hop per invoke, and a waveform U-Net whose total stride must divide 128
samples is limited to ~3 stride-4 levels; (2) int8 errors on a mask scale with the
signal, while an int8 waveform output adds noise at a fixed ~-48 dB of full scale that
caps SDR on quiet passages; (3) down-sampling over *frequency* keeps every layer
frame-by-frame, so the streaming state is a few frames; (4) with <= 1 M MACs per hop
(~7.8 k per sample) a time-domain model would have to be far narrower than the paper's;
(5) it trains in minutes on a CPU, which the paper names as the weakness of time-domain
models.

Layout ``(B, T, F, C)``, time causal, frequency the U-Net's axis. The 257 bins are padded
to ``positions * patch`` and folded into ``patch`` channels (65 x 4). Then:

- encoder level: conv (``time_kernel`` x 3, stride 2 over frequency) -> norm -> ReLU ->
  GLU (two 1x1 convs) -> SE;
- bottleneck: flatten each frame, 1x1 conv to ``units``, SRU / LSTM / GRU over time
  (the projections are 1x1 convs batched over all frames, eqs. 3.4-3.7; only the
  elementwise recurrence is sequential), 1x1 conv back; causal by default,
  ``bidirectional`` is an offline-only option;
- decoder level: add the skip, conv (``time_kernel`` x 3) -> norm -> ReLU -> GLU -> SE,
  then sub-pixel up-sampling over frequency (1x3 conv to 2x channels, reshape to 2x
  positions, crop) with ReLU except on the last level;
- one mask per source (``sources``: vocals and accompaniment by default, or the four
  stems; softmax, anchored softmax or sigmoid), trained with an L1 loss on the masked
  magnitudes (:func:`tinysep.models.losses.magnitude_l1`).

Normalisation is per frame (see :class:`~tinysep.models.layers.FrameGroupNorm`): the
paper's GroupNorm normalises over time, which is not causal. The SE squeeze is the mean
over frequency of the current frame, for the same reason. Ablation switches: ``se``,
``recurrent`` (sru / lstm / gru), ``norm`` (group / batch / none).
"""

from __future__ import annotations

import tf_keras as keras

from tinysep.data.clip import SOURCES
from tinysep.data.sources import STEMS
from tinysep.models.blocks import (
    MAX_OPTION_INT,
    NORMS,
    check_flag_options,
    check_int_options,
    check_sources_param,
    mask_head,
    mask_logit_count,
    norm,
    params_bins,
    squeeze_excite_frequency,
)
from tinysep.models.causal import Graph, conv1x1
from tinysep.models.layers import CELL_GATES, RECURRENT_CELLS, SliceAxis
from tinysep.models.reframing import INPUT_NORM

L = keras.layers

NAME = "unet-se-sru"

DEFAULTS = {
    "channels": [16, 32, 48],  # per U-Net level (frequency halves at each level)
    "patch": 4,  # bins folded into channels before the first level
    "time_kernel": 2,  # frames each encoder/decoder conv sees (causal)
    "units": 64,  # recurrent units in the bottleneck
    "recurrent": "sru",
    "bidirectional": False,
    "se": True,
    "se_reduction": 4,
    "norm": "group",
    "groups": 4,
    "mask": "softmax",
    "input_gain": 100.0,
    "sources": list(SOURCES),  # one mask each, in this order
}

PRESETS = {
    "tiny": {},
    "small": {"channels": [24, 48, 96], "units": 128},
    "medium": {"channels": [32, 64, 128, 192], "units": 256, "groups": 8},
    # Four stems: only the last up-sampling conv grows (to 4 x patch outputs per position).
    "tiny4": {"sources": list(STEMS)},
}


def validate(params: dict) -> None:
    """Raise ValueError naming the first option that is out of range."""
    if params["recurrent"] not in RECURRENT_CELLS:
        raise ValueError(f"recurrent must be one of {RECURRENT_CELLS}, got {params['recurrent']!r}")
    if params["norm"] not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {params['norm']!r}")
    check_sources_param(params)
    channels = params["channels"]
    if (
        not isinstance(channels, (list, tuple))
        or not channels
        or not all(isinstance(c, int) and not isinstance(c, bool) and 0 < c <= MAX_OPTION_INT
                   for c in channels)
    ):
        raise ValueError(
            f"channels must be a non-empty list of whole numbers from 1 to {MAX_OPTION_INT}, "
            f"got {channels!r}"
        )
    check_int_options(params, ("patch", "time_kernel", "units", "se_reduction", "groups"))
    check_flag_options(params, ("se", "bidirectional"))
    n_bins = params_bins(params)
    if -(-n_bins // params["patch"]) < 2 ** len(channels):
        raise ValueError(
            f"{len(channels)} levels need at least {2 ** len(channels)} frequency positions, "
            f"patch={params['patch']} leaves {-(-n_bins // params['patch'])}"
        )


def _conv_glu_se(graph: Graph, x, channels: int, name: str, stride: int, p: dict):
    """Causal (time_kernel x 3) conv over (time, frequency) -> norm -> ReLU -> GLU -> SE."""
    ctx = graph.context(x, p["time_kernel"] - 1, f"{name}_conv")
    ctx = L.ZeroPadding2D(((0, 0), (1, 1)), name=f"{name}_conv_fpad")(ctx)
    y = L.Conv2D(
        channels, (p["time_kernel"], 3), strides=(1, stride), padding="valid", name=f"{name}_conv"
    )(ctx)
    y = norm(y, p["norm"], f"{name}_norm", p["groups"])
    y = L.Activation("relu", name=f"{name}_relu")(y)
    a = conv1x1(y, channels, f"{name}_glu_a")
    b = conv1x1(y, channels, f"{name}_glu_b", activation="sigmoid")
    y = L.Multiply(name=f"{name}_glu")([a, b])
    if p["se"]:
        y = squeeze_excite_frequency(y, f"{name}_se", p["se_reduction"])
    return y


def _upsample(x, channels: int, positions: int, name: str, last: bool):
    """Sub-pixel up-sampling over frequency: 1x3 conv to 2x channels, fold, crop."""
    y = L.ZeroPadding2D(((0, 0), (1, 1)), name=f"{name}_up_fpad")(x)
    y = L.Conv2D(2 * channels, (1, 3), padding="valid", name=f"{name}_up")(y)
    if not last:
        y = L.Activation("relu", name=f"{name}_up_relu")(y)
    y = L.Reshape((-1, 2 * int(x.shape[2]), channels), name=f"{name}_up_fold")(y)
    if 2 * int(x.shape[2]) != positions:
        y = SliceAxis(2, 0, positions, name=f"{name}_up_crop")(y)
    return y


def _bottleneck(graph: Graph, x, p: dict):
    positions, channels = int(x.shape[2]), int(x.shape[3])
    units, cell = p["units"], p["recurrent"]
    flat = L.Reshape((-1, 1, positions * channels), name="rnn_flatten")(x)
    h = conv1x1(flat, units, "rnn_in")
    directions = 2 if p["bidirectional"] else 1
    proj = conv1x1(h, CELL_GATES[cell] * units * directions, "rnn_proj")
    inputs = [proj, h] if cell == "sru" else [proj]
    y = graph.recurrence("rnn", cell, units, p["bidirectional"], inputs)
    y = conv1x1(y, positions * channels, "rnn_out")
    return L.Reshape((-1, positions, channels), name="rnn_unflatten")(y)


def body(graph: Graph, features, p: dict):
    """Compressed magnitudes ``(B, T, bins)`` -> masks ``(B, T, bins, sources)`` (257 bins)."""
    n_bins = params_bins(p)
    patch, n_logits = p["patch"], mask_logit_count(len(p["sources"]), p["mask"])
    positions = -(-n_bins // patch)
    x = L.BatchNormalization(axis=-1, name=INPUT_NORM)(features)
    x = L.Reshape((-1, n_bins, 1), name="to_bins")(x)
    if positions * patch != n_bins:
        x = L.ZeroPadding2D(((0, 0), (0, positions * patch - n_bins)), name="pad_bins")(x)
    x = L.Reshape((-1, positions, patch), name="to_patches")(x)

    level_positions, skips = [positions], []
    for i, channels in enumerate(p["channels"]):
        x = _conv_glu_se(graph, x, channels, f"enc{i}", 2, p)
        skips.append(x)
        level_positions.append(int(x.shape[2]))

    x = _bottleneck(graph, x, p)

    for i in reversed(range(len(p["channels"]))):
        x = L.Add(name=f"dec{i}_skip")([x, skips[i]])
        x = _conv_glu_se(graph, x, p["channels"][i], f"dec{i}", 1, p)
        out_channels = p["channels"][i - 1] if i else n_logits * patch
        x = _upsample(x, out_channels, level_positions[i], f"dec{i}", last=i == 0)

    logits = L.Reshape((-1, positions * patch, n_logits), name="to_masks")(x)
    if positions * patch != n_bins:
        logits = SliceAxis(2, 0, n_bins, name="crop_bins")(logits)
    return mask_head(logits, n_bins, p["mask"])
