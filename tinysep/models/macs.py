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

from tinysep.models.streaming_spec import find_streaming_spec

L = keras.layers


def _positions(output_shape) -> int:
    """Output positions per call: every axis but channels; ``None`` (the whole-clip batch
    and time axes) counts as one. A streaming graph's batch is 1, except where windows of
    time are folded into it (``FoldTime``)."""
    return int(np.prod([1 if d is None else int(d) for d in output_shape[:-1]]))


def _node_macs(layer: keras.layers.Layer, input_shape, output_shape) -> int:
    """MACs of one call of ``layer`` with these input and output shapes."""
    if isinstance(layer, L.DepthwiseConv2D):
        kh, kw = layer.kernel_size
        channels = int(input_shape[-1])
        return _positions(output_shape) * kh * kw * channels * layer.depth_multiplier
    if isinstance(layer, L.Conv2D):
        kh, kw = layer.kernel_size
        cin = int(input_shape[-1]) // layer.groups
        return _positions(output_shape) * kh * kw * cin * layer.filters
    if isinstance(layer, L.Dense):
        return _positions(output_shape) * int(input_shape[-1]) * layer.units
    counter = getattr(layer, "macs_per_frame", None)
    if counter is not None:
        first = input_shape[0] if isinstance(input_shape, list) else input_shape
        frames = first[1] if len(first) > 2 and first[1] is not None else 1
        return int(counter(first)) * int(frames)
    return 0


def layer_macs(layer: keras.layers.Layer, model: keras.Model | None = None) -> int:
    """MACs of ``layer`` summed over its calls in ``model`` (every call when ``model`` is
    None): the streaming form applies some layers once per frame with shared weights."""
    nodes = range(len(layer._inbound_nodes))
    if model is not None and hasattr(model, "_network_nodes"):
        nodes = [i for i in nodes if f"{layer.name}_ib-{i}" in model._network_nodes]
    if len(layer._inbound_nodes) == 1:
        return _node_macs(layer, layer.input_shape, layer.output_shape)
    return sum(
        _node_macs(layer, layer.get_input_shape_at(i), layer.get_output_shape_at(i))
        for i in nodes
    )


def count_macs(model: keras.Model) -> int:
    """MACs of one forward call (one frame if the time axis is ``None``)."""
    return int(sum(layer_macs(layer, model) for layer in model.layers))


def macs_per_hop(model: keras.Model) -> int:
    """MACs per 128-sample hop of a whole-clip or streaming model."""
    spec = find_streaming_spec(model)
    frames = spec.frames_per_invoke if spec is not None else 1
    return -(-count_macs(model) // frames)


def macs_by_layer(model: keras.Model) -> dict[str, int]:
    """Per-layer MACs (non-zero only), for reports."""
    return {layer.name: m for layer in model.layers if (m := layer_macs(layer, model))}
