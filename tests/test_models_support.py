"""Shared pieces of the model tests: random weights, whole/streaming pairs, a stream loop.

No tests here.
"""

from __future__ import annotations

import numpy as np
import tf_keras as keras

from tinysep.models.causal import Graph
from tinysep.models.streaming import _copy_weights


def randomize(model: keras.Model, seed: int = 0, scale: float = 0.3) -> keras.Model:
    """Non-trivial weights everywhere (BatchNorm variances kept positive), so equalities
    between forms cannot hold by accident of an all-ones/zeros initialisation."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = []
        for var in layer.weights:
            if "variance" in var.name:
                values.append(rng.uniform(0.5, 1.5, var.shape))
            else:
                values.append(rng.normal(0.0, scale, var.shape))
        if values:
            layer.set_weights([v.astype(np.float32) for v in values])
    return model


def pair(build, inner_shape: tuple, frames_per_invoke: int, seed: int = 0):
    """``build(graph, x) -> y`` as a whole-clip model and a streaming model (same weights)
    plus the streaming graph (for its state list)."""
    whole_graph = Graph(streaming=False)
    x = whole_graph.input(inner_shape, "x")
    whole = keras.Model(x, build(whole_graph, x))
    randomize(whole, seed)
    graph = Graph(streaming=True, frames_per_invoke=frames_per_invoke)
    xs = graph.input(inner_shape, "x")
    ys = build(graph, xs)
    stream = keras.Model([xs, *graph.state_inputs], [ys, *graph.state_outputs])
    _copy_weights(whole, stream)
    return whole, stream, graph


def stream_through(stream: keras.Model, graph: Graph, x: np.ndarray, reset: bool = False):
    """Run ``x`` (1, T, ...) through ``stream`` invoke by invoke; ``reset`` zeroes the
    states before every invoke (a deliberately wrong stream, for negative controls)."""
    step = graph.frames
    zeros = [np.zeros(s.shape, np.float32) for s in graph.states]
    states = list(zeros)
    outs = []
    for start in range(0, x.shape[1], step):
        results = stream([x[:, start : start + step], *states], training=False)
        results = results if isinstance(results, list) else [results]
        outs.append(np.asarray(results[0]))
        states = zeros if reset else [np.asarray(r) for r in results[1:]]
    return np.concatenate(outs, axis=1)
