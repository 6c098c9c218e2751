"""Multiply-accumulates per hop, counted layer by layer.

Counted: Conv2D (``positions x kh x kw x cin/groups x cout``), DepthwiseConv2D
(``positions x kh x kw x channels x multiplier``), Dense (``positions x in x out``) and
custom layers that report ``macs_per_frame`` (recurrent matmuls, GroupNorm's group
averaging). Not counted: elementwise MUL/ADD, activations, reductions and BatchNorm
(folded into the conv before it at export) -- a few percent of the total here.

A whole-clip model (time ``None``) is counted for one frame; a streaming model for one
invoke, divided by its frames per invoke. One frame = one hop of 128 samples.
"""

from __future__ import annotations

import numpy as np
import tf_keras as keras

L = keras.layers


def _positions(output_shape) -> int:
    """Output positions per frame: every axis between batch and channels; ``None``
    (the whole-clip time axis) counts as one frame."""
    return int(np.prod([1 if d is None else int(d) for d in output_shape[1:-1]]))


def layer_macs(layer: keras.layers.Layer) -> int:
    """MACs of one call of ``layer`` (must have been called exactly once)."""
    if isinstance(layer, L.DepthwiseConv2D):
        kh, kw = layer.kernel_size
        channels = int(layer.input_shape[-1])
        return _positions(layer.output_shape) * kh * kw * channels * layer.depth_multiplier
    if isinstance(layer, L.Conv2D):
        kh, kw = layer.kernel_size
        cin = int(layer.input_shape[-1]) // layer.groups
        return _positions(layer.output_shape) * kh * kw * cin * layer.filters
    if isinstance(layer, L.Dense):
        return _positions(layer.output_shape) * int(layer.input_shape[-1]) * layer.units
    counter = getattr(layer, "macs_per_frame", None)
    if counter is not None:
        shape = layer.input_shape
        first = shape[0] if isinstance(shape, list) else shape
        frames = first[1] if len(first) > 2 and first[1] is not None else 1
        return int(counter(first)) * int(frames)
    return 0


def count_macs(model: keras.Model) -> int:
    """MACs of one forward call (one frame if the time axis is ``None``)."""
    total = 0
    for layer in model.layers:
        if len(layer._inbound_nodes) > 1:
            raise ValueError(f"layer {layer.name!r} is called more than once; count per call")
        total += layer_macs(layer)
    return int(total)


def macs_per_hop(model: keras.Model) -> int:
    """MACs per 128-sample hop of a whole-clip or streaming model."""
    spec = getattr(model, "tinysep_streaming", None)
    frames = spec.frames_per_invoke if spec is not None else 1
    return -(-count_macs(model) // frames)


def macs_by_layer(model: keras.Model) -> dict[str, int]:
    """Per-layer MACs (non-zero only), for reports."""
    return {layer.name: m for layer in model.layers if (m := layer_macs(layer))}
