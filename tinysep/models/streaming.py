"""The streaming form of a separator: ``frames_per_invoke`` frames + explicit states in,
masks + new states out, fixed shapes, batch 1, same weights as the whole-clip model.

The streaming model's first input is ``features = log1p(gain * |X|)`` (see
:func:`compress_magnitude`): LOG has no int8 kernel in TFLite Micro or on the Edge TPU,
and a linear int8 quantizer on raw magnitudes would keep only ~48 dB of their ~100 dB
range, so the compression runs in float on the board before the input is quantized.
``input="magnitude"`` keeps the compression inside (float use only).

A model with ``pool_above`` (``dualgate-tcn``) streams in the bundle's pooled form: its
``features`` input holds the pooled features ``(1, K, features)``
(:func:`firmware_host.bundle.features.input_features` with ``pool_above``) and its masks
are one per input position ``(1, K, features, sources)``; the board spreads each pair's
masks to both bins (:func:`firmware_host.bundle.features.spread_pairs`). The spec records
``pool_above`` in ``input.transform`` and ``output``. The float-only ``input="magnitude"``
form keeps the pooling and spreading in its graph (pooling comes after the compression, which
that form computes inside): magnitudes of every bin in, masks of every bin out.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras as keras

from firmware_host.bundle.features import pool_pairs, pooled_count, spread_pairs
from tinysep.models.blocks import params_framing
from tinysep.models.causal import Graph
from tinysep.models.layers import LogCompression
from tinysep.models.registry import build_body, model_config, resolved_params
from tinysep.models.streaming_spec import (  # noqa: F401  (the spec's readers import it here)
    StreamingSpec,
    attach_streaming_spec,
    find_streaming_spec,
    streaming_spec,
)

STREAM_INPUTS = ("features", "magnitude")


def compress_magnitude(magnitude: np.ndarray, gain: float) -> np.ndarray:
    """The model's input transform, ``log1p(gain * max(|X|, 0))``, in float32."""
    return np.log1p(gain * np.maximum(np.asarray(magnitude, np.float32), 0.0)).astype(np.float32)


def offline_only_reason(config: dict) -> str | None:
    """Why a model config cannot stream (it needs frames after the one a board has just
    analysed), or None if it can."""
    params = resolved_params(config)
    if params.get("bidirectional"):
        return "is bidirectional: it needs the whole clip and cannot stream"
    if params.get("mask_delay"):
        return (f"looks {params['mask_delay']} frames ahead (mask_delay): its masks belong to "
                f"earlier mixture frames, and a board applies each mask to the frame it has "
                f"just analysed, so it separates whole clips only")
    return None


def make_streaming_model(
    model: keras.Model,
    frames_per_invoke: int = 1,
    *,
    config: dict | None = None,
    input: str = "features",
) -> keras.Model:
    """Streaming Keras model with ``model``'s weights (copied by layer name).

    Inputs: ``[input, *state inputs]``, outputs: ``[masks, *state outputs]`` in the order
    of ``streaming_spec(result).states``. The :class:`StreamingSpec` is recorded with the
    model (:func:`attach_streaming_spec`) and read back with ``streaming_spec(result)``.
    """
    if input not in STREAM_INPUTS:
        raise ValueError(f"input must be one of {STREAM_INPUTS}, got {input!r}")
    config = model_config(model) if config is None else config
    params = resolved_params(config)
    reason = offline_only_reason(config)
    if reason:
        raise ValueError(f"model {config['name']!r} {reason}")
    framing = params_framing(params)
    pool_above = int(params.get("pool_above", 0)) if input == "features" else 0
    positions = pooled_count(framing.n_bins, pool_above)
    graph = Graph(streaming=True, frames_per_invoke=frames_per_invoke)
    x = graph.input((positions,), input)
    gain = float(params["input_gain"])
    features = LogCompression(gain, name="compress")(x) if input == "magnitude" else x
    masks = build_body(graph, config, features, pooled=bool(pool_above))
    stream = keras.Model(
        [x, *graph.state_inputs], [masks, *graph.state_outputs], name=f"{model.name}_streaming"
    )
    _copy_weights(model, stream)
    stream.tinysep_config = dict(config)
    transform = (
        {"kind": "none"}
        if input == "magnitude"
        else {"kind": "log1p", "gain": gain, "formula": "features = log1p(gain * |X|)"}
    )
    output = {
        "name": "masks",
        "shape": [1, frames_per_invoke, positions, len(params["sources"])],
        "sources": list(params["sources"]),
        "meaning": "source magnitude = mask * mixture magnitude, mixture phase",
    }
    if pool_above:
        transform = {**transform, "pool_above": pool_above,
                     "formula": "features = log1p(gain * |X|), bins >= pool_above averaged "
                                "in pairs"}
        output = {**output, "pool_above": pool_above,
                  "meaning": "source magnitude = mask * mixture magnitude, mixture phase; a "
                             "pair's mask on both of its bins"}
    spec = StreamingSpec(
        frames_per_invoke=frames_per_invoke,
        input={"name": input, "shape": [1, frames_per_invoke, positions],
               "transform": transform},
        output=output,
        states=tuple(graph.states),
        sources=tuple(params["sources"]),
        hop=framing.hop,
        n_fft=framing.n_fft,
        framing=framing.name,
    )
    return attach_streaming_spec(stream, spec)


def _copy_weights(source: keras.Model, target: keras.Model) -> None:
    by_name = {layer.name: layer for layer in source.layers}
    for layer in target.layers:
        if not layer.weights:
            continue
        if layer.name not in by_name:
            raise ValueError(
                f"streaming layer {layer.name!r} has no counterpart in {source.name!r}"
            )
        src = by_name[layer.name].get_weights()
        dst = layer.get_weights()
        if isinstance(layer, keras.layers.Dense) and src and src[0].shape[:2] == (1, 1):
            src = [src[0].reshape(src[0].shape[2:]), *src[1:]]  # 1x1 conv kernel -> dense
        if [w.shape for w in src] != [w.shape for w in dst]:
            raise ValueError(
                f"layer {layer.name!r}: weight shapes {[w.shape for w in src]} do not match the "
                f"streaming form's {[w.shape for w in dst]}"
            )
        layer.set_weights(src)


def serving_function(stream: keras.Model):
    """``(concrete_function, trackable)`` for ``tf.lite.TFLiteConverter.from_concrete_functions``.

    Inputs and outputs keep the spec's tensor names (the TFLite signature uses them).
    Converting this way skips the Keras SavedModel export that ``from_keras_model`` does,
    which re-traces every layer: ~1 s instead of ~10-30 s for the ``tiny`` models.
    """
    names = [t.name.split(":")[0] for t in stream.inputs]
    signature = [
        tf.TensorSpec(t.shape, tf.float32, name=n)
        for t, n in zip(stream.inputs, names, strict=True)
    ]
    output_names = list(stream.output_names)

    @tf.function(input_signature=signature)
    def serve(*args):
        outputs = stream(list(args), training=False)
        return dict(zip(output_names, outputs, strict=True))

    holder = tf.Module()
    holder.weights = list(stream.weights)
    return serve.get_concrete_function(), holder


def iterate_streaming(stream: keras.Model, frames: np.ndarray):
    """Feed ``frames`` ``(T, bins)`` (the stream's input kind) invoke by invoke, carrying the
    states; yields ``(inputs, outputs)`` dicts keyed by tensor name for every invoke.

    ``inputs`` are exactly what the model saw (input chunk + states), which is also what a
    representative dataset for int8 calibration needs. The tail is zero-padded to a whole
    invoke.
    """
    spec = streaming_spec(stream)
    frames = np.asarray(frames, np.float32)
    bins = int(spec.input["shape"][-1])
    if frames.ndim != 2 or frames.shape[1] != bins or frames.shape[0] < 1:
        raise ValueError(f"frames must have shape (T >= 1, {bins}), got {frames.shape}")
    step = spec.frames_per_invoke
    padded = np.zeros((-(-frames.shape[0] // step) * step, bins), np.float32)
    padded[: frames.shape[0]] = frames
    invoke = getattr(stream, "_tinysep_invoke", None)
    if invoke is None:  # traced once per model: ~10x faster than eager calls per frame
        invoke = tf.function(lambda inputs: stream(inputs, training=False))
        stream._tinysep_invoke = invoke
    input_name, states = spec.input["name"], spec.zero_states()
    for start in range(0, padded.shape[0], step):
        inputs = {input_name: padded[None, start : start + step], **states}
        results = invoke([inputs[input_name], *(states[s.input] for s in spec.states)])
        outputs = {"masks": np.asarray(results[0])}
        for state, value in zip(spec.states, results[1:], strict=True):
            outputs[state.output] = np.asarray(value)
        states = {s.input: outputs[s.output] for s in spec.states}
        yield inputs, outputs


def run_streaming(stream: keras.Model, frames: np.ndarray) -> np.ndarray:
    """The model's masks ``(T, positions, S)`` for ``frames`` ``(T, positions)`` fed invoke
    by invoke (positions: bins, or the pooled features of a ``pool_above`` model;
    :func:`bin_masks` spreads its masks to every bin)."""
    masks = [outputs["masks"][0] for _, outputs in iterate_streaming(stream, frames)]
    return np.concatenate(masks, axis=0)[: np.asarray(frames).shape[0]]


def stream_pool_above(stream: keras.Model) -> int:
    """The first pooled bin of a streaming model's input and masks (0: not pooled)."""
    return int(streaming_spec(stream).output.get("pool_above", 0))


def stream_features(stream: keras.Model, features: np.ndarray) -> np.ndarray:
    """A streaming model's input for compressed magnitudes ``(T, bins)`` (see
    :func:`compress_magnitude`): pooled as the board pools them when the model is."""
    return np.asarray(pool_pairs(features, stream_pool_above(stream)), np.float32)


def bin_masks(stream: keras.Model, masks: np.ndarray) -> np.ndarray:
    """A streaming model's masks ``(..., positions, S)`` on every bin ``(..., bins, S)``."""
    return spread_pairs(masks, stream_pool_above(stream))
