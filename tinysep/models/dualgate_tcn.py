"""``dualgate-tcn``: a causal temporal convolution network with a dual gate in every block.

Mask estimation on the STFT magnitude (paper 1). The model sees ``log1p(gain * |X|)``
(:class:`~tinysep.models.layers.LogCompression`) normalised per bin (BatchNorm), maps
each frame to ``residual`` channels and runs ``repeats`` stacks of ``blocks`` residual
blocks with dilations 1, 2, 4, ... Each block (time on axis 1, ``(B, T, 1, C)``)::

    h = ReLU(norm(conv1x1(x)))  *  sigmoid(conv1x1_gate(x))      # input gate
    y = ReLU(norm(causal depthwise conv(h, kernel, dilation)))
    y = y * attention(y)                                         # output gate
    x = x + conv1x1(y)

``attention`` is one of :data:`~tinysep.models.attention.ATTENTIONS` (``se`` by
default; ``sk`` replaces the depthwise conv by a selective-kernel pair). A 1x1 conv then
gives one mask per bin and source (``sources``: vocals and accompaniment by default, or
the four stems; softmax over the sources by default, or ``anchored``: the same softmax with
the last source's logit fixed at zero, one projection fewer). The
separated magnitude is mask x mixture magnitude, resynthesised with the mixture phase.

Two options spend MACs rather than weights, both off in the presets: ``encoder`` adds to the
input projection a projection of local spectral features (stride-2 convs over the bins of
each frame), and ``refine`` corrects the mask logits bin by bin from the logits and the
input bins around each bin (two convs over frequency). Both start at zero, so a model grown
by them (``tinysep train --init-from SMALLER --init-matching``) starts as the smaller one.
Neither adds state: their convs see one frame. ``background`` (frames, 0 in the presets)
gives the refiner one more view of each bin: its distance from the bin's own running mean
over about that many frames, so a bin that has held steady for seconds (a sustained band
part) reads apart from one that just began; it carries one state value per bin. In int8
that mean moves in whole steps of its state's scale, so it can stall while a bin stays
within about half a step / (1 - decay) of it.

``framing`` picks the STFT the model sees (``hann512``: 512 / 128, 257 bins, the default;
``long1024``: 1024 / 128 with the same latency, 513 bins). ``pool_above`` (a bin index, 0:
off) averages the bins from that one up in pairs on the input side and gives one mask logit
per pair, copied to both its bins: with ``long1024``, ``pool_above=257`` keeps every bin
below 4 kHz and sees 385 features, so the ``tiny`` model with ``mask=anchored`` holds the
weights of today's softmax ``tiny``. It excludes ``encoder`` and ``refine`` (they look at
neighbouring bins, which pooling merges). The whole-clip model pools and spreads in its
graph; its streaming form for a bundle (``body(..., pooled=True)``) takes the pooled
features and gives one mask per pair, the board doing both (docs/bundle.md).

``mask_delay`` (frames, 0 in the presets) trades latency for a look ahead: the masks the
model gives at frame ``t`` belong to the mixture frame ``t - mask_delay``, so every mask is
computed from that many frames after its own (:func:`tinysep.models.mask_delay_frames`).
The network is the same; only the frame its output is applied to moves.

Every weight is used once per frame, so MACs per hop ~= parameters; ``tiny`` is sized by
the 256 k parameter budget (and ~200 k int8 weights for a 256 KB file) and by the state
it must carry (the depthwise contexts, ``2 * (2**blocks - 1)`` frames per stack).
"""

from __future__ import annotations

import math
import re

import tf_keras as keras

from tinysep.data.clip import SOURCES
from tinysep.data.sources import STEMS
from tinysep.dsp import DEFAULT_FRAMING, FRAMINGS
from tinysep.models.attention import ATTENTIONS, output_gate, selective_kernel
from tinysep.models.blocks import (
    MAX_OPTION_INT,
    NORMS,
    check_flag_options,
    check_int_options,
    check_sources_param,
    mask_head,
    mask_logit_count,
    norm_relu,
    params_bins,
)
from tinysep.models.causal import Graph, causal_depthwise, conv1x1
from tinysep.models.layers import SliceAxis
from tinysep.models.reframing import INPUT_NORM, resample_features, resample_logits

L = keras.layers

NAME = "dualgate-tcn"
MASK_PROJECTION = "mask_proj"  # the 1x1 conv to every bin's mask logits
INPUT_PROJECTION = "in_proj"  # the 1x1 conv from every frame's features to the channels
MAX_BLOCKS = 12  # blocks per stack: dilations up to 2048 frames (16 s)
MAX_REPEATS = 16  # stacks: the medium preset has 3; each costs seconds to build
BLOCK_OUTPUT = re.compile(r"^s\d+b\d+_out$")  # a block's projection into the residual path


def zero_when_grown(layer_name: str) -> bool:
    """Whether a layer a smaller model lacks starts at zero in a model grown from it: a new
    block's projection into the residual path, so the deeper model first computes what the
    smaller one did (its other layers keep their fresh initialization and learn)."""
    return bool(BLOCK_OUTPUT.match(layer_name))


def reframed_weights(layer_name: str, weights: list, theirs: dict, ours: dict) -> list | None:
    """The weights of a layer that runs over the features (input normalisation, input and
    mask projections) carried from a model with parameters ``theirs`` to one seeing other
    features ``ours`` (:mod:`tinysep.models.reframing`); None for any other layer, or when
    the two do not hold the same logits per feature."""
    if layer_name == INPUT_NORM:
        return [resample_features(w, 0, theirs, ours) for w in weights]
    if layer_name == INPUT_PROJECTION and len(weights) == 2:
        kernel, bias = weights
        return [resample_features(kernel, 2, theirs, ours, summed=True), bias]
    if layer_name == MASK_PROJECTION and len(weights) == 2:
        logits = mask_logit_count(len(ours["sources"]), ours["mask"])
        kernel, bias = weights
        if kernel.shape[-1] != logits * feature_count(theirs):
            return None
        return [resample_logits(kernel, logits, theirs, ours),
                resample_logits(bias, logits, theirs, ours)]
    return None


DEFAULTS = {
    "residual": 32,  # channels between blocks
    "hidden": 64,  # channels inside a block
    "kernel": 3,  # depthwise kernel over time
    "blocks": 5,  # blocks per stack, dilations 1 .. 2**(blocks-1)
    "repeats": 3,  # stacks
    "attention": "se",
    "input_gate": True,
    "norm": "batch",
    "groups": 4,  # for norm="group"
    "se_reduction": 4,
    "se_window": 8,  # frames the squeeze averages over (causal)
    "temporal_kernel": 7,  # cbam temporal gate
    "attention_dim": 8,  # self-attention query/key/value width
    "attention_window": 8,  # frames self-attention looks back over
    "mask": "softmax",
    "input_gain": 100.0,
    "sources": list(SOURCES),  # one mask each, in this order
    "encoder": [],  # channels of stride-2 frequency convs in front of the input projection
    "encoder_kernel": 5,  # bins each encoder conv sees
    "refine": 0,  # channels of the bin-level mask refiner (0: none)
    "refine_kernel": 5,  # bins each refiner conv sees
    "background": 0,  # time constant (frames) of the refiner's per-bin running mean (0: none)
    "mask_delay": 0,  # frames the masks lag their mixture frame (a look ahead; 0: none)
    "framing": DEFAULT_FRAMING,  # the STFT the model sees: "hann512" or "long1024"
    "pool_above": 0,  # first bin averaged in pairs with its neighbour (0: no pooling)
}

PRESETS = {
    # Wide residual path, two stacks (receptive field 125 frames = 1 s): at equal training
    # steps it separates better than 32-wide x 3 stacks, with ~206 k parameters.
    "tiny": {"residual": 64, "hidden": 64, "repeats": 2},
    "small": {"residual": 64, "hidden": 128, "blocks": 6},
    "medium": {"residual": 128, "hidden": 256, "blocks": 7, "se_window": 16},
    # Four stems: the mask projection doubles, so the blocks narrow to keep the int8 file
    # and the arena within the MCU budget.
    "tiny4": {"residual": 56, "hidden": 56, "repeats": 2, "sources": list(STEMS)},
}


def validate(params: dict) -> None:
    """Raise ValueError naming the first option that is out of range."""
    if params["attention"] not in ATTENTIONS:
        raise ValueError(f"attention must be one of {ATTENTIONS}, got {params['attention']!r}")
    if params["norm"] not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {params['norm']!r}")
    check_int_options(params, (
        "residual", "hidden", "kernel", "se_reduction", "se_window",
        "temporal_kernel", "attention_dim", "attention_window", "groups", "encoder_kernel",
        "refine_kernel"))
    # dilations reach 2**(blocks-1) frames: beyond MAX_BLOCKS a block would look back minutes
    check_int_options(params, ("blocks",), maximum=MAX_BLOCKS)
    check_int_options(params, ("repeats",), maximum=MAX_REPEATS)
    check_flag_options(params, ("input_gate",))
    check_sources_param(params)
    encoder = params["encoder"]
    if not isinstance(encoder, (list, tuple)) or not all(
        isinstance(c, int) and not isinstance(c, bool) and 0 < c <= MAX_OPTION_INT
        for c in encoder
    ):
        raise ValueError(f"encoder must be a list of whole numbers from 1 to {MAX_OPTION_INT}, "
                         f"got {encoder!r}")
    if len(encoder) > 4:
        raise ValueError(f"encoder has at most 4 levels (257 bins -> 17), got {len(encoder)}")
    check_int_options(params, ("refine", "mask_delay", "background"), minimum=0)
    if params["background"] and not params["refine"]:
        raise ValueError("background feeds the refiner: it needs refine > 0")
    if params["kernel"] < 2:
        raise ValueError(f"kernel must be >= 2 frames, got {params['kernel']}")
    if params["framing"] not in FRAMINGS:
        raise ValueError(f"framing must be one of {sorted(FRAMINGS)}, got {params['framing']!r}")
    check_int_options(params, ("pool_above",), minimum=0)
    pool = params["pool_above"]
    bins = params_bins(params)
    if pool and (pool >= bins - 1 or (bins - pool) % 2):
        raise ValueError(
            f"pool_above must leave an even number of bins (at least 2) from it to the last of "
            f"the {bins} bins of framing {params['framing']!r}, got {pool}"
        )
    if pool and (params["encoder"] or params["refine"]):
        raise ValueError("pool_above cannot be combined with encoder or refine (they look at "
                         "neighbouring bins, which pooling merges)")


def _block(graph: Graph, x, name: str, dilation: int, p: dict):
    h = conv1x1(x, p["hidden"], f"{name}_in")
    h = norm_relu(h, p["norm"], f"{name}_in_norm", p["groups"])
    if p["input_gate"]:
        gate = conv1x1(x, p["hidden"], f"{name}_in_gate", activation="sigmoid")
        h = L.Multiply(name=f"{name}_in_gated")([h, gate])
    if p["attention"] == "sk":
        y = selective_kernel(graph, h, name, dilation, p)
    else:
        ctx = graph.context(h, (p["kernel"] - 1) * dilation, f"{name}_dw")
        y = causal_depthwise(graph, ctx, p["kernel"], dilation, f"{name}_dw")
        y = norm_relu(y, p["norm"], f"{name}_dw_norm", p["groups"])
        y = output_gate(graph, y, p["attention"], name, p)
    out = conv1x1(y, p["residual"], f"{name}_out")
    return L.Add(name=f"{name}_res")([x, out])


def _frequency_conv(x, channels: int, kernel: int, stride: int, name: str, activation=None,
                    initializer="glorot_uniform"):
    """Conv over the bins of each frame alone (``(1, kernel)``, no time context, no state)."""
    return L.Conv2D(
        channels, (1, kernel), strides=(1, stride), padding="same", activation=activation,
        kernel_initializer=initializer, name=name,
    )(x)


def _encoder(bins, p: dict):
    """``(B, T, 257, 1)`` normalised bins -> ``(B, T, 1, positions * channels)``: each level
    halves the bins with a ReLU conv, so local spectral shapes (harmonics, onsets) are
    found anywhere in frequency with the same few weights."""
    x = bins
    for level, channels in enumerate(p["encoder"]):
        x = _frequency_conv(x, channels, p["encoder_kernel"], 2, f"enc{level}")
        x = norm_relu(x, p["norm"], f"enc{level}_norm", p["groups"])
    positions, channels = (int(d) for d in x.shape[2:])
    return L.Reshape((-1, 1, positions * channels), name="enc_flat")(x)


def feature_count(p: dict) -> int:
    """Features per frame the network sees: every bin, or with ``pool_above`` the bins
    below it and one per pair of bins from it on."""
    bins, pool = params_bins(p), p["pool_above"]
    return pool + (bins - pool) // 2 if pool else bins


def pool_features(features, p: dict):
    """``(B, T, bins)`` -> ``(B, T, features)``: the bins from ``pool_above`` on averaged in
    pairs (slices, an average pool over (1, 2) and a concatenation)."""
    pool = p["pool_above"]
    if not pool:
        return features
    upper = params_bins(p) - pool
    fine = SliceAxis(-1, 0, pool, name="fine_bins")(features)
    up = SliceAxis(-1, pool, pool + upper, name="upper_bins")(features)
    up = L.Reshape((-1, upper, 1), name="upper_as_image")(up)
    up = L.AveragePooling2D((1, 2), name="upper_pool")(up)
    up = L.Reshape((-1, upper // 2), name="upper_pooled")(up)
    return L.Concatenate(axis=-1, name="pooled_feats")([fine, up])


def spread_logits(logits, p: dict, n_logits: int):
    """The mask projection ``(B, T, 1, features * n_logits)`` (source fastest) ->
    ``(B, T, bins, n_logits)``, each pair's logits on both of its bins."""
    bins, pool = params_bins(p), p["pool_above"]
    if not pool:
        return L.Reshape((-1, bins, n_logits), name="to_masks")(logits)
    pairs = (bins - pool) // 2
    fine = SliceAxis(-1, 0, pool * n_logits, name="fine_logits")(logits)
    up = SliceAxis(-1, pool * n_logits, None, name="upper_logits")(logits)
    up = L.Reshape((-1, pairs, n_logits), name="upper_col")(up)
    up = L.Concatenate(axis=-1, name="upper_twice")([up, up])
    up = L.Reshape((-1, 1, 2 * pairs * n_logits), name="upper_spread")(up)
    both = L.Concatenate(axis=-1, name="logits_all_bins")([fine, up])
    return L.Reshape((-1, bins, n_logits), name="to_masks")(both)


def _input_projection(normed, bins, p: dict):
    """Each frame's ``residual`` channels: a linear view of all bins, plus, with an encoder,
    a projection of its local features. That projection starts at zero, so a model grown
    by an encoder starts as the model it was grown from."""
    frames = L.Reshape((-1, 1, feature_count(p)), name="to_frames")(normed)
    x = conv1x1(frames, p["residual"], INPUT_PROJECTION)
    if not p["encoder"]:
        return x
    extra = conv1x1(_encoder(bins, p), p["residual"], "enc_proj", initializer="zeros")
    return L.Add(name="in_sum")([x, extra])


def _refine(graph: Graph, logits, bins, p: dict):
    """Per-bin correction of the mask logits from the logits and the input bins around
    each bin: the 1x1 mask projection alone makes every frame's logits a linear function of
    ``residual`` features, whatever the input's detail between harmonics. The last conv
    starts at zero, so the refiner starts as the identity."""
    n_sources = int(logits.shape[-1])
    views = [logits, bins]
    if p["background"]:
        decay = math.exp(-1.0 / p["background"])
        views.append(graph.background_deviation(bins, decay, "background"))
    x = L.Concatenate(axis=-1, name="refine_in")(views)
    x = _frequency_conv(x, p["refine"], p["refine_kernel"], 1, "refine0", "relu")
    x = _frequency_conv(x, n_sources, p["refine_kernel"], 1, "refine1", initializer="zeros")
    return L.Add(name="refined")([logits, x])


def _blocks(graph: Graph, x, p: dict):
    """The residual stacks and the output ReLU."""
    for r in range(p["repeats"]):
        for b in range(p["blocks"]):
            x = _block(graph, x, f"s{r}b{b}", 2**b, p)
    return L.Activation("relu", name="out_relu")(x)


def body(graph: Graph, features, p: dict, pooled: bool = False):
    """Compressed magnitudes ``(B, T, bins)`` -> masks ``(B, T, bins, sources)``.

    ``pooled`` (with ``pool_above``): the features arrive pooled ``(B, T, features)`` and the
    masks leave per position ``(B, T, features, sources)``, one per pair above
    ``pool_above``: the board pools and spreads them (the bundle's streaming model), so the
    graph holds no slices, pooling or concatenations for it. Same layers and weights.
    """
    n_logits = mask_logit_count(len(p["sources"]), p["mask"])
    n_bins = params_bins(p)
    if pooled and p["pool_above"]:
        normed = L.BatchNormalization(axis=-1, name=INPUT_NORM)(features)
        x = _input_projection(normed, None, p)
        x = _blocks(graph, x, p)
        logits = conv1x1(x, n_logits * feature_count(p), MASK_PROJECTION)
        logits = L.Reshape((-1, feature_count(p), n_logits), name="to_masks")(logits)
        return mask_head(logits, feature_count(p), p["mask"])
    normed = L.BatchNormalization(axis=-1, name=INPUT_NORM)(pool_features(features, p))
    bins = None
    if p["encoder"] or p["refine"]:
        bins = L.Reshape((-1, n_bins, 1), name="to_bins")(normed)
    x = _blocks(graph, _input_projection(normed, bins, p), p)
    logits = conv1x1(x, n_logits * feature_count(p), MASK_PROJECTION)
    logits = spread_logits(logits, p, n_logits)
    if p["refine"]:
        logits = _refine(graph, logits, bins, p)
    return mask_head(logits, n_bins, p["mask"])
