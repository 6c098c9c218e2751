"""Convert a streaming separator to TFLite: full-integer int8 (the deploy form), int16x8,
dynamic-range and float16 (for comparison), or plain float32.

int8 is calibrated in two steps so that every state pair can be copied byte for byte on
the board: the converter first records the float range of every tensor over the
representative dataset (``_experimental_calibrate_only``), then each state input and
the state output that feeds it get the union of their two ranges, and the calibrated
model is quantized (the converter's own MLIR quantizer, the same call it makes itself).
Identical ranges give identical scales and zero points. Where the quantizer still ties a
state output to other tensors (a CONCATENATION it feeds), the whole group of tensors
that must share one scale gets the union range and the model is quantized again.

A result is checked before it is returned: one subgraph, no custom ops, no float tensor
left in a full-integer model (unless the layer was kept float on request), and, for int8,
only ops with int8 kernels in TFLite Micro; anything else is a ValueError naming the
Keras layer and the op.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from convert.micro import MICRO_INT8_OPS, SAME_SCALE_OPS
from convert.tflite_model import TfliteModel, layer_of
from firmware_host.bundle.layout import FULL_INTEGER, QUANTIZATIONS
from firmware_host.bundle.quantization import requantize_rule

QUANT_MODES = dict(zip(QUANTIZATIONS, (
    "int8 weights, activations, input, output and states (deploy form)",
    "int16 activations, input, output and states; int8 weights",
    "int8 weights, float activations (dynamic range quantization)",
    "float16 weights, float32 compute",
    "no quantization",
), strict=True))


@dataclass
class QuantizedModel:
    """A converted streaming model and how it was made."""

    mode: str
    content: bytes
    frames_per_invoke: int
    calibrated: bytes | None = None  # int8: the calibrated float model (ranges per tensor)
    tied_states: list[str] = field(default_factory=list)
    keep_float: tuple[str, ...] = ()
    calibration_frames: int = 0
    seconds: float = 0.0

    @property
    def bytes(self) -> int:
        return len(self.content)


def _converter(stream):
    import tensorflow as tf

    from tinysep.models.streaming import serving_function

    function, holder = serving_function(stream)
    return tf.lite.TFLiteConverter.from_concrete_functions([function], holder)


def _dataset(samples: Iterable[dict]):
    samples = list(samples)

    def generate():
        yield from samples

    return generate, len(samples)


def _check_representative(stream, representative) -> list[dict]:
    from tinysep.models.streaming import streaming_spec

    spec = streaming_spec(stream)
    if representative is None:
        raise ValueError("full-integer quantization needs a representative dataset "
                         "(calibration clips)")
    k = getattr(representative, "frames_per_invoke", spec.frames_per_invoke)
    if k != spec.frames_per_invoke:
        raise ValueError(
            f"the representative dataset was recorded at {k} frames per invoke, the model "
            f"streams {spec.frames_per_invoke}"
        )
    samples = list(representative)
    if not samples:
        raise ValueError("the representative dataset is empty")
    wanted = {spec.input["name"], *(s.input for s in spec.states)}
    missing = wanted - set(samples[0])
    if missing:
        raise ValueError(f"representative samples lack the model inputs {sorted(missing)}")
    return samples


def quantize_stream(
    stream,
    mode: str = "int8",
    representative=None,
    *,
    keep_float: Sequence[str] = (),
    per_channel: bool = False,
    micro_ops_only: bool = True,
) -> QuantizedModel:
    """Convert streaming Keras model ``stream`` to TFLite in ``mode`` (see QUANT_MODES).

    ``representative``: a :class:`calibration.representative.RepresentativeSet` (or any
    iterable of input dicts) for int8 / int16x8. ``keep_float``: Keras layer names whose
    ops stay float (int8 only; a debugging aid: the model is then no longer full-integer).
    ``micro_ops_only``: int8 ops must have TFLite Micro int8 kernels.
    """
    import tensorflow as tf

    from tinysep.models.streaming import streaming_spec
    from tinysep.quiet import quiet_runtime

    if mode not in QUANT_MODES:
        raise ValueError(f"unknown quantization {mode!r}; choose from {', '.join(QUANT_MODES)}")
    spec = streaming_spec(stream)
    keep_float = tuple(keep_float)
    check_keep_float(stream, keep_float, mode)
    start = time.perf_counter()
    with quiet_runtime():  # no XNNPACK / fully_quantize lines, no converter warning
        converter = _converter(stream)
        result = QuantizedModel(mode, b"", spec.frames_per_invoke, keep_float=keep_float)
        if mode == "float32":
            result.content = converter.convert()
        elif mode == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
            result.content = converter.convert()
        elif mode == "dynamic":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            result.content = converter.convert()
        else:
            samples = _check_representative(stream, representative)
            generate, count = _dataset(samples)
            result.calibration_frames = count * spec.frames_per_invoke
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = generate
            # int16x8 needs per-channel depthwise weights (the converter rejects per-tensor)
            converter._experimental_disable_per_channel = not per_channel and mode == "int8"
            if mode == "int16x8":
                converter.target_spec.supported_ops = [
                    tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
                ]
                converter.inference_input_type = tf.int16
                converter.inference_output_type = tf.int16
                result.content = _convert(converter, stream)
            else:
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
                converter._experimental_calibrate_only = True
                calibrated = _convert(converter, stream)
                result.calibrated = calibrated
                result.content, result.tied_states = _quantize_tied(
                    calibrated, spec, per_channel, keep_float
                )
    result.seconds = time.perf_counter() - start
    check_quantized(result, spec, micro_ops_only=micro_ops_only)
    return result


def _convert(converter, stream) -> bytes:
    try:
        return converter.convert()
    except Exception as exc:  # the converter raises several private error types
        raise ValueError(
            f"TFLite conversion of {stream.name!r} failed: {str(exc).strip()[-600:]}"
        ) from exc


def _pair_tensors(model: TfliteModel, spec) -> list[tuple[str, int, int]]:
    sig = model.signature
    if sig is None:
        raise ValueError("the converted model has no signature: cannot find its state tensors")
    return [(s.input, sig.inputs[s.input], sig.outputs[s.output]) for s in spec.states]


def _same_scale_groups(model: TfliteModel) -> dict[int, int]:
    """Union-find over tensors that must share one scale (data moved, not computed)."""
    parent: dict[int, int] = {}

    def find(t: int) -> int:
        parent.setdefault(t, t)
        while parent[t] != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    for op in model.operators:
        if op.op not in SAME_SCALE_OPS:
            continue
        data = [t for t in op.inputs if t >= 0 and not model.tensors[t].constant]
        if op.op != "CONCATENATION" and op.op != "PACK":
            data = data[:1]
        for t in [*data, *op.outputs]:
            parent[find(t)] = find(op.outputs[0])
    return {t: find(t) for t in list(parent)}


def _set_ranges(calibrated: TfliteModel, groups: list[list[int]]) -> None:
    tensors = calibrated.obj.subgraphs[0].tensors
    for group in groups:
        params = [tensors[t].quantization for t in group]
        present = [q for q in params if q is not None and q.min is not None and len(q.min)]
        if not present:
            continue
        lo = float(min(min(q.min) for q in present))
        hi = float(max(max(q.max) for q in present))
        for q in present:
            q.min = np.array([lo], np.float32)
            q.max = np.array([hi], np.float32)


def _quantize_tied(
    calibrated: bytes, spec, per_channel: bool, keep_float: Sequence[str]
) -> tuple[bytes, list[str]]:
    import tensorflow as tf
    from tensorflow.lite.python import convert

    model = TfliteModel(calibrated)
    pairs = _pair_tensors(model, spec)
    denylist = nodes_of_layers(model, keep_float)

    def quantize(groups: list[list[int]]) -> bytes:
        edited = TfliteModel(calibrated)
        _set_ranges(edited, groups)
        try:
            return convert.mlir_quantize(
                edited.to_bytes(),
                disable_per_channel=not per_channel,
                input_data_type=tf.int8,
                output_data_type=tf.int8,
                denylisted_nodes=denylist or None,
            )
        except Exception as exc:
            raise ValueError(f"int8 quantization failed: {str(exc).strip()[-600:]}") from exc

    def untied(content: bytes) -> list[str]:
        out = TfliteModel(content)
        sig = out.signature
        names = []
        for state in spec.states:
            a = out.tensors[sig.inputs[state.input]].per_tensor
            b = out.tensors[sig.outputs[state.output]].per_tensor
            if a is None or b is None or requantize_rule(b, a, "int8") != "copy":
                names.append(state.input)
        return names

    groups = [[t_in, t_out] for _, t_in, t_out in pairs]
    content = quantize(groups)
    left = untied(content)
    if left:  # tie whole same-scale groups of the state pairs that still differ
        root = _same_scale_groups(model)
        members: dict[int, list[int]] = {}
        for t, r in root.items():
            members.setdefault(r, []).append(t)
        wider = []
        for name, t_in, t_out in pairs:
            group = {t_in, t_out}
            if name in left:
                for t in (t_in, t_out):
                    group.update(members.get(root.get(t, t), [t]))
            wider.append(sorted(group))
        content = quantize(wider)
        left = untied(content)
    tied = [name for name, _, _ in pairs if name not in left]
    return content, tied


def check_keep_float(stream, layers: Sequence[str], mode: str = "int8") -> None:
    """Raise ValueError for layers kept float under a ``mode`` other than int8, or naming any
    of ``layers`` that streaming model ``stream`` lacks: a misspelt --keep-float then fails
    before calibration rather than after converting."""
    if layers and mode != "int8":
        raise ValueError("keeping layers float applies to int8 quantization only")
    _check_layers_known(layers, {layer.name for layer in stream.layers}, "the streaming model")


def _check_layers_known(layers: Sequence[str], known: set[str], where: str) -> None:
    unknown = sorted(set(layers) - known)
    if unknown:
        raise ValueError(
            f"cannot keep layer(s) {unknown} float: {where} has no such layer "
            f"(layers: {', '.join(sorted(known)[:40])}{', ...' if len(known) > 40 else ''})"
        )


def nodes_of_layers(model: TfliteModel, layers: Sequence[str]) -> list[str]:
    """Converter node names (tensor names) that belong to the Keras ``layers``."""
    if not layers:
        return []
    _check_layers_known(layers, {t.layer for t in model.tensors if t.name}, "the model")
    wanted = set(layers)
    names = set()
    for t in model.tensors:
        if t.name and t.layer in wanted:  # fused ops: the full name and each part
            names.update([t.name, *(p for p in t.name.split(";") if layer_of(p) in wanted)])
    return sorted(names)


def check_quantized(result: QuantizedModel, spec, micro_ops_only: bool = True) -> None:
    """Raise ValueError if the converted model breaks the bundle's rules (see module doc)."""
    model = TfliteModel(result.content)
    if model.subgraph_count != 1:
        raise ValueError(
            f"the converted model has {model.subgraph_count} subgraphs; the board needs one "
            "(a WHILE/IF loop was left in the graph)"
        )
    custom = sorted({op.op for op in model.operators if op.custom})
    if custom:
        raise ValueError(f"the converted model uses custom ops {custom}; only builtins run "
                         "on TFLite Micro and the Edge TPU")
    for tensor in model.tensors:
        if -1 in tensor.shape_signature:
            raise ValueError(f"tensor {tensor.name!r} has a dynamic shape {tensor.shape_signature}")
    dtype = FULL_INTEGER.get(result.mode)
    if dtype is None:
        return
    producers = model.producers()
    kept = set(result.keep_float)
    floats = []
    for tensor in model.tensors:
        if tensor.constant or not tensor.dtype.startswith("float"):
            continue
        op = producers.get(tensor.index)
        if tensor.layer in kept or (op is not None and op.op in ("DEQUANTIZE",)):
            continue
        floats.append((tensor.layer, op.op if op else "input"))
    if floats:
        layer, op = floats[0]
        raise ValueError(
            f"layer {layer!r} ({op}) has no {dtype} form: the converter left it in float "
            f"({len(floats)} float tensor(s)); change the layer or keep it float explicitly"
        )
    if result.mode == "int8" and micro_ops_only:
        for op in model.operators:
            if op.op not in MICRO_INT8_OPS and op.op not in ("QUANTIZE", "DEQUANTIZE"):
                out = model.tensors[op.outputs[0]] if op.outputs else None
                layer = out.layer if out is not None else "?"
                raise ValueError(
                    f"layer {layer!r} ({op.op}) has no int8 kernel in TFLite Micro; the "
                    "streaming model must end its float preprocessing before the int8 graph"
                )
    sig = model.signature
    for name in [spec.input["name"], *(s.input for s in spec.states)]:
        t = model.tensors[sig.inputs[name]]
        if t.dtype != dtype:
            raise ValueError(f"model input {name!r} is {t.dtype}, expected {dtype}")


def quantize_whole_clip(
    model, features: Sequence[np.ndarray], frames: int, mode: str = "int8"
) -> tuple[bytes, object]:
    """int8 model that processes ``frames`` frames in one invoke from zero states, calibrated
    on ``features`` (each zero-padded or cut to ``frames``): the whole-clip reference for
    the streaming model. Returns ``(content, streaming Keras model)``.

    Calibrated on the same frames as a bundle, its convolution and context tensors get the
    bundle's ranges exactly; unrolled recurrences are calibrated per step here.
    """
    from tinysep.models import make_streaming_model
    from tinysep.models.streaming import streaming_spec

    whole = make_streaming_model(model, frames)
    spec = streaming_spec(whole)
    samples = []
    for f in features:
        x = np.zeros((1, frames, int(spec.input["shape"][-1])), np.float32)
        n = min(frames, len(f))
        x[0, :n] = f[:n]
        samples.append({spec.input["name"]: x, **spec.zero_states()})
    return quantize_stream(whole, mode, samples).content, whole
