"""Causal attention forms that compute the output gate of a dual-gate TCN block.

Every form looks only at the current frame and a bounded window of past frames, so it
streams with a small state:

- ``se``: squeeze-excitation. The squeeze is a mean over the last ``window`` frames
  (a causal stand-in for the global mean); it is applied after the reducing 1x1 conv,
  which is the same thing by linearity and keeps the state ``channels / reduction``
  wide. The window mean is a depthwise conv initialised to ``1 / window`` and left
  trainable (a learned causal pooling that starts as the mean).
- ``cbam``: the ``se`` channel gate followed by a temporal ("spatial" along the only
  spatial axis, time) gate: a 2-channel descriptor (learned pooling; int8 sets have no
  channel max) and a causal conv over ``kernel`` frames, sigmoid.
- ``self``: scaled dot-product self-attention of the current frame over the last
  ``window`` frames (keys/values kept in a state); the attended value gives the gate.
  Each offset's score is a 1x1 conv over ``q * k`` initialised to ``1/sqrt(d)``
  (the paper's score at initialisation, learnable per offset).
- ``sk``: selective kernel: two depthwise branches (kernel 3 and 5, same dilation) over
  one shared context, mixed by a softmax over the branches computed from the squeezed
  sum (built by :func:`selective_kernel`, it replaces the block's depthwise conv).
- ``none``: no output gate (ablation).
"""

from __future__ import annotations

import math

import tf_keras as keras

from tinysep.models.blocks import norm_relu
from tinysep.models.causal import Graph, causal_depthwise, conv1x1
from tinysep.models.layers import SliceAxis

L = keras.layers

ATTENTIONS = ("se", "sk", "cbam", "self", "none")
SK_KERNELS = (3, 5)


def _squeeze(graph: Graph, y, name: str, reduction: int, window: int):
    """Reduced channel descriptor: 1x1 conv, causal mean over ``window`` frames, ReLU."""
    z = conv1x1(y, max(1, int(y.shape[-1]) // reduction), f"{name}_reduce")
    if window > 1:
        ctx = graph.context(z, window - 1, f"{name}_window")
        z = causal_depthwise(
            graph,
            ctx,
            window,
            1,
            f"{name}_mean",
            use_bias=False,
            initializer=keras.initializers.Constant(1.0 / window),
        )
    return L.Activation("relu", name=f"{name}_relu")(z)


def channel_gate(graph: Graph, y, name: str, reduction: int, window: int):
    """Squeeze-excitation weights in (0, 1), one per channel and frame."""
    z = _squeeze(graph, y, name, reduction, window)
    return conv1x1(z, int(y.shape[-1]), f"{name}_excite", activation="sigmoid")


def temporal_gate(graph: Graph, y, name: str, kernel: int):
    """CBAM's spatial gate along time: one weight per frame, causal over ``kernel``."""
    desc = conv1x1(y, 2, f"{name}_desc")
    ctx = graph.context(desc, kernel - 1, f"{name}_conv")
    s = L.Conv2D(1, (kernel, 1), padding="valid", name=f"{name}_conv")(ctx)
    return L.Activation("sigmoid", name=f"{name}_conv_sigmoid")(s)


def self_attention_gate(graph: Graph, y, name: str, dim: int, window: int):
    """Gate from causal windowed self-attention of each frame over its past ``window``."""
    q = conv1x1(y, dim, f"{name}_query")
    kv = conv1x1(y, 2 * dim, f"{name}_keyvalue")
    history = graph.context(kv, window - 1, f"{name}_kv")
    scores, values = [], []
    for j in range(window):  # j frames back
        start, stop = window - 1 - j, (-j if j else None)
        kv_j = SliceAxis(1, start, stop, name=f"{name}_kv{j}")(history)
        k_j = SliceAxis(-1, 0, dim, name=f"{name}_key{j}")(kv_j)
        values.append(SliceAxis(-1, dim, 2 * dim, name=f"{name}_value{j}")(kv_j))
        qk = L.Multiply(name=f"{name}_qk{j}")([q, k_j])
        scores.append(
            L.Conv2D(
                1,
                1,
                use_bias=False,
                kernel_initializer=keras.initializers.Constant(1.0 / math.sqrt(dim)),
                name=f"{name}_score{j}",
            )(qk)
        )
    weights = L.Softmax(axis=-1, name=f"{name}_softmax")(
        L.Concatenate(axis=-1, name=f"{name}_scores")(scores)
    )
    weighted = [
        L.Multiply(name=f"{name}_weighted{j}")(
            [SliceAxis(-1, j, j + 1, name=f"{name}_weight{j}")(weights), values[j]]
        )
        for j in range(window)
    ]
    context = weighted[0] if window == 1 else L.Add(name=f"{name}_context")(weighted)
    return conv1x1(context, int(y.shape[-1]), f"{name}_gate", activation="sigmoid")


def output_gate(graph: Graph, y, kind: str, name: str, params: dict):
    """``y`` times its attention gate (``kind`` in :data:`ATTENTIONS`, not ``sk``)."""
    if kind == "none":
        return y
    if kind == "se":
        gate = channel_gate(graph, y, f"{name}_se", params["se_reduction"], params["se_window"])
        return L.Multiply(name=f"{name}_out_gated")([y, gate])
    if kind == "cbam":
        gate = channel_gate(graph, y, f"{name}_se", params["se_reduction"], params["se_window"])
        y = L.Multiply(name=f"{name}_channel_gated")([y, gate])
        t_gate = temporal_gate(graph, y, f"{name}_tg", params["temporal_kernel"])
        return L.Multiply(name=f"{name}_out_gated")([y, t_gate])
    if kind == "self":
        gate = self_attention_gate(
            graph, y, f"{name}_att", params["attention_dim"], params["attention_window"]
        )
        return L.Multiply(name=f"{name}_out_gated")([y, gate])
    raise ValueError(f"attention must be one of {ATTENTIONS}, got {kind!r}")


def selective_kernel(graph: Graph, h, name: str, dilation: int, params: dict):
    """SK conv: depthwise branches (kernels 3 and 5) mixed by a per-channel softmax."""
    small, large = SK_KERNELS
    channels = int(h.shape[-1])
    ctx = graph.context(h, (large - 1) * dilation, f"{name}_dw")
    branches = []
    for k in (small, large):
        u = causal_depthwise(graph, ctx, k, dilation, f"{name}_dw{k}", skip=(large - k) * dilation)
        branches.append(norm_relu(u, params["norm"], f"{name}_dw{k}_norm", params["groups"]))
    total = L.Add(name=f"{name}_sk_sum")(branches)
    z = _squeeze(graph, total, f"{name}_sk", params["se_reduction"], params["se_window"])
    logits = conv1x1(z, 2 * channels, f"{name}_sk_select")
    pair = L.Reshape((-1, channels, 2), name=f"{name}_sk_pair")(logits)
    weights = L.Softmax(axis=-1, name=f"{name}_sk_softmax")(pair)
    mixed = []
    for i, u in enumerate(branches):
        w = SliceAxis(-1, i, i + 1, name=f"{name}_sk_w{i}")(weights)
        w = L.Reshape((-1, 1, channels), name=f"{name}_sk_w{i}_frames")(w)
        mixed.append(L.Multiply(name=f"{name}_sk_mix{i}")([w, u]))
    return L.Add(name=f"{name}_sk_out")(mixed)
