"""The bundle on TFLite Micro itself (the ``tflite-micro`` package: the real allocator and
kernels, built for this host): the arena it allocates, the estimate beside it, and the
pointwise layers exported as FULLY_CONNECTED so that per-tensor weights need no
per-channel buffers."""

from __future__ import annotations

import numpy as np
import pytest
from convert_helpers import clips, fitted_model_folder, workdir

from convert.export import export_bundle
from convert.micro import estimate_arena, measure_arena
from convert.tflite_model import TfliteModel

# Invokes compared between TFLite Micro and the host interpreter. Over six fitted models
# (40 invokes of the held-out clip each), at most 0.64 % of the output values differed by
# more than 1 LSB, the mean difference was at most 0.03 LSB and the largest 15 LSB.
INVOKES = 40


@pytest.fixture(scope="module")
def bundles() -> dict:
    """The same fitted model exported per-tensor (the default) and per-channel."""
    out = {}
    for per_channel in (False, True):
        folder = workdir() / f"bundle-arena-{'pc' if per_channel else 'pt'}"
        out[per_channel] = export_bundle(
            fitted_model_folder("dualgate-tcn"), folder, quant="int8",
            calibration=list(clips("train")), calibration_frames=128, per_channel=per_channel,
            force=True, progress=False,
        )
    return out


def test_export_measures_the_arena_with_tflite_micro(bundles):
    summary = bundles[False]
    measured = summary["arena_tflite_micro"]
    assert measured["bytes"] == summary["arena_bytes_tflm"]
    assert measured["used"] == measured["head"] + measured["tail"]
    # The arena to provide: more than the bytes kept (temporary memory while preparing ops),
    # found to 64 B; 64 B less no longer allocates.
    assert measured["used"] < measured["bytes"] < measured["used"] + 16384
    with pytest.raises(RuntimeError, match="could not allocate"):
        measure_arena((workdir() / summary["bundle"] / "model.tflite").read_bytes(),
                      max_arena=measured["bytes"] - 64)
    # The head holds the planned non-constant tensors: the estimate plans them the same way.
    assert measured["head"] == summary["arena_estimate"]["activations"]
    # Persistent parts reported by the recording allocator add up to at most the tail.
    assert 0 < sum(measured["parts"].values()) <= measured["tail"]
    # The 32-bit estimate is below the 64-bit host measurement, but not far below.
    assert 0.6 * measured["used"] < summary["arena_bytes_estimate"] <= measured["used"]


def test_pointwise_layers_are_fully_connected_and_per_tensor_saves_arena(bundles):
    per_tensor, per_channel = bundles[False], bundles[True]
    for summary in (per_tensor, per_channel):
        ops = TfliteModel((workdir() / summary["bundle"] / "model.tflite").read_bytes()).op_names
        assert "FULLY_CONNECTED" in ops and "CONV_2D" not in ops
    model = TfliteModel((workdir() / per_tensor["bundle"] / "model.tflite").read_bytes())
    fc_weights = [model.tensors[op.inputs[1]] for op in model.operators
                  if op.op == "FULLY_CONNECTED"]
    assert fc_weights and all(len(w.scale) == 1 for w in fc_weights)
    # TFLite Micro keeps 8 B per output channel only for per-channel FULLY_CONNECTED
    channels = sum(w.shape[0] for w in fc_weights)
    saved = per_channel["arena_bytes_tflm"] - per_tensor["arena_bytes_tflm"]
    assert saved >= 8 * channels
    assert per_tensor["model_bytes"] < per_channel["model_bytes"]
    assert estimate_arena(model)["bytes"] == per_tensor["arena_bytes_estimate"]


def test_tflite_micro_runs_the_bundle_close_to_the_host_interpreter(bundles):
    from ai_edge_litert import interpreter as litert
    from tflite_micro.python.tflite_micro import runtime

    from firmware_host.board.pipeline import to_pcm
    from firmware_host.bundle import read_bundle
    from hil.reference import HostPipeline

    folder = workdir() / bundles[False]["bundle"]
    content = (folder / "model.tflite").read_bytes()
    micro = runtime.Interpreter.from_bytes(content, arena_size=bundles[False]["arena_bytes_tflm"])
    host = litert.Interpreter(model_content=content, num_threads=1,
                              experimental_op_resolver_type=litert.OpResolverType.BUILTIN_REF)
    host.allocate_tensors()
    inputs, outputs = host.get_input_details(), host.get_output_details()
    # The inputs of a real stream: the held-out clip's features and the states the host
    # carried from one invoke to the next (both interpreters get the same inputs each time).
    records = HostPipeline(read_bundle(folder)).tensor_check_inputs(
        to_pcm(clips("test")[0].mixture), INVOKES)
    differences = []
    for record in records:
        for i, (detail, value) in enumerate(zip(inputs, record, strict=True)):
            host.set_tensor(detail["index"], value)
            micro.set_input(value, i)
        host.invoke()
        micro.invoke()
        for j, detail in enumerate(outputs):
            a = host.get_tensor(detail["index"]).astype(np.int32)
            b = micro.get_output(j).astype(np.int32)
            assert a.shape == b.shape
            differences.append(np.abs(a - b).ravel())
    differences = np.concatenate(differences)
    # Same int8 graph, two kernel libraries: rounding that differs by 1 LSB in a few places,
    # which the layers after it can widen for a rare value.
    assert differences.size > 50_000
    assert (differences > 1).mean() <= 0.02
    assert differences.mean() <= 0.1
    assert differences.max() <= 32


def test_an_arena_too_small_fails_with_tflite_micros_reason(bundles):
    content = (workdir() / bundles[False]["bundle"] / "model.tflite").read_bytes()
    with pytest.raises(RuntimeError, match="could not allocate the model in 4,096 B"):
        measure_arena(content, max_arena=4096)
