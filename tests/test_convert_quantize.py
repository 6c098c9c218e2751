"""Representative datasets and quantization of the streaming model: int8 with every state
copied byte for byte, int16x8 / dynamic / float16 for comparison, and clear errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from convert_helpers import SMALL, clips, held_out_features, load

from calibration.representative import (
    FloatStream,
    build_representative_set,
    check_calibration_clips,
    classify_levels,
    frame_levels_dbfs,
)
from convert.micro import MICRO_INT8_OPS
from convert.quantize import nodes_of_layers, quantize_stream
from convert.runtime import tensor_spec
from convert.tflite_model import TfliteModel
from firmware_host.bundle.quantization import requantize_rule
from tinysep.data.clip import Clip
from tinysep.models import build_model, make_streaming_model, run_streaming, streaming_spec


def _interpret(content: bytes, spec, features: np.ndarray) -> np.ndarray:
    """Stream through a converted model with the signature's own quantization params."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=content).get_signature_runner()
    ins, outs = runner.get_input_details(), runner.get_output_details()

    entry = tensor_spec
    states = {s.input: entry(ins[s.input]).zero() for s in spec.states}
    k, masks = spec.frames_per_invoke, []
    for start in range(0, len(features) - k + 1, k):
        result = runner(features=entry(ins["features"]).quantize(features[None, start:start + k]),
                        **states)
        masks.append(entry(outs["masks"]).dequantize(result["masks"])[0])
        for s in spec.states:
            value = entry(outs[s.output]).dequantize(result[s.output])
            states[s.input] = entry(ins[s.input]).quantize(value)
    return np.concatenate(masks)


@pytest.fixture(scope="module")
def tcn_stream():
    return make_streaming_model(load("dualgate-tcn"), 2)


@pytest.fixture(scope="module")
def tcn_rep(tcn_stream):
    return build_representative_set(tcn_stream, list(clips("train")), 256, segment_frames=64,
                                    progress=False)


def test_representative_set_records_real_states(tcn_stream, tcn_rep):
    assert tcn_rep.frames == 256 and len(tcn_rep) == 128
    assert len(tcn_rep.segments) == 4
    spec = streaming_spec(tcn_stream)
    sample = tcn_rep.samples[-1]
    assert set(sample) == {"features", *(s.input for s in spec.states)}
    # Warmed-up states are not zeros, and they are what the float stream carried.
    assert all(np.abs(sample[s.input]).max() > 0 for s in spec.states)
    seg = tcn_rep.segments[0]
    clip = next(c for c in clips("train") if c.name == seg["clip"])
    from tinysep.dsp import magnitude, stft
    from tinysep.models import compress_magnitude, iterate_streaming

    features = compress_magnitude(magnitude(stft(clip.mixture)), 100.0)
    first = seg["start_frame"] // 2
    keras_inputs = [inputs for inputs, _ in iterate_streaming(tcn_stream, features)][first]
    recorded = tcn_rep.samples[0]
    np.testing.assert_array_equal(recorded["features"], keras_inputs["features"])
    for s in spec.states:
        np.testing.assert_allclose(recorded[s.input], keras_inputs[s.input], atol=1e-4)


def test_float_tflite_stream_equals_keras_stream(tcn_stream):
    features = held_out_features(40)
    np.testing.assert_allclose(FloatStream(tcn_stream).masks(features),
                               run_streaming(tcn_stream, features), atol=1e-5)


def test_coverage_counts_loud_quiet_and_silent_frames(tcn_stream):
    clip = clips("train")[0]
    n = len(clip.mixture)
    quiet = dataclasses.replace(clip, name="quiet-then-silent",
                                mixture=np.concatenate([clip.mixture[: n // 2] * 0.03,
                                                        np.zeros(n - n // 2, np.float32)]))
    levels = frame_levels_dbfs(quiet.mixture)
    counts = classify_levels(levels)
    assert counts["silent"] > 0.4 * len(levels) and counts["quiet"] > 0.3 * len(levels)
    rep = build_representative_set(tcn_stream, [clip, quiet], 128, segment_frames=64,
                                   gains_db=(0.0, -40.0), progress=False)
    frames = rep.coverage["frames"]
    assert sum(frames.values()) == rep.frames == 128
    assert frames["loud"] > 0 and frames["quiet"] + frames["silent"] > 0
    assert [s["gain_db"] for s in rep.segments] == [0.0, -40.0]


def test_bad_calibration_sets_are_refused(tcn_stream):
    with pytest.raises(ValueError, match="empty"):
        build_representative_set(tcn_stream, [], 64, progress=False)
    clip = clips("train")[0]
    wrong = dataclasses.replace(clip, name="at-44k", sample_rate=44100)
    with pytest.raises(ValueError, match="'at-44k' is at 44100 Hz, expected 16000"):
        check_calibration_clips([clip, wrong])
    with pytest.raises(ValueError, match="no mono audio"):
        check_calibration_clips([Clip("empty", np.zeros(0, np.float32), np.zeros(0),
                                      np.zeros(0))])
    with pytest.raises(ValueError, match="representative dataset"):
        quantize_stream(tcn_stream, "int8", None)


def test_int8_is_full_integer_with_every_state_copied(tcn_stream, tcn_rep):
    q = quantize_stream(tcn_stream, "int8", tcn_rep)
    model = TfliteModel(q.content)
    spec = streaming_spec(tcn_stream)
    assert model.subgraph_count == 1
    assert set(model.op_names) <= MICRO_INT8_OPS
    assert {t.dtype for t in model.tensors if not t.constant} == {"int8"}
    sig = model.signature
    for s in spec.states:
        a = model.tensors[sig.inputs[s.input]].per_tensor
        b = model.tensors[sig.outputs[s.output]].per_tensor
        assert a == b, s.input
    assert sorted(q.tied_states) == sorted(s.input for s in spec.states)
    # The int8 stream tracks the float stream on held-out audio.
    features = held_out_features(160)
    got = _interpret(q.content, spec, features)
    expected = run_streaming(tcn_stream, features)
    assert np.mean(np.abs(got - expected)) < 0.02
    assert np.corrcoef(got.ravel(), expected.ravel())[0, 1] > 0.98


def test_recurrent_state_pairs_tied_through_a_concatenation():
    # GRU at 2 frames per invoke: the state output also feeds the CONCATENATION of the
    # per-frame outputs, which forces the second tying pass.
    stream = make_streaming_model(build_model("unet-se-sru", **SMALL["unet-se-sru"],
                                              recurrent="gru"), 2)
    rep = build_representative_set(stream, list(clips("train")), 128, segment_frames=64,
                                   progress=False)
    q = quantize_stream(stream, "int8", rep)
    sig = TfliteModel(q.content).signature
    model = TfliteModel(q.content)
    for s in streaming_spec(stream).states:
        a = model.tensors[sig.inputs[s.input]].per_tensor
        b = model.tensors[sig.outputs[s.output]].per_tensor
        assert requantize_rule(b, a, "int8") == "copy", s.input


def test_comparison_modes_order_by_precision(tcn_stream, tcn_rep):
    spec = streaming_spec(tcn_stream)
    features = held_out_features(120)
    expected = run_streaming(tcn_stream, features)
    errors = {}
    for mode in ("int8", "int16x8", "dynamic", "float16", "float32"):
        q = quantize_stream(tcn_stream, mode, tcn_rep)
        errors[mode] = float(np.mean(np.abs(_interpret(q.content, spec, features) - expected)))
        dtypes = {t.dtype for t in TfliteModel(q.content).tensors if t.constant}
        if mode in ("int8", "int16x8", "dynamic"):
            assert "int8" in dtypes
        if mode == "float16":
            assert "float16" in dtypes
    assert errors["float32"] < 1e-5
    assert errors["float16"] < 1e-3
    assert errors["int16x8"] < errors["int8"] / 3
    assert errors["dynamic"] < errors["int8"]


def test_a_layer_with_no_int8_kernel_is_named():
    # With the log compression inside the model, LOG would have to run in int8.
    stream = make_streaming_model(load("dualgate-tcn"), 1, input="magnitude")
    samples = [{"magnitude": np.full((1, 1, 257), v, np.float32),
                **streaming_spec(stream).zero_states()} for v in (0.0, 0.5, 3.0)]
    with pytest.raises(ValueError, match=r"layer 'compress' \(LOG\) has no int8 kernel"):
        quantize_stream(stream, "int8", samples)


def test_named_layers_can_stay_float(tcn_stream, tcn_rep):
    q = quantize_stream(tcn_stream, "int8", tcn_rep, keep_float=["mask_proj"])
    model = TfliteModel(q.content)
    float_layers = {t.layer for t in model.tensors if t.dtype == "float32" and not t.constant}
    assert "mask_proj" in float_layers
    assert "DEQUANTIZE" in model.op_names
    with pytest.raises(ValueError, match="the streaming model has no such layer"):
        quantize_stream(tcn_stream, "int8", tcn_rep, keep_float=["no_such_layer"])
    with pytest.raises(ValueError, match="applies to int8 quantization only"):
        quantize_stream(tcn_stream, "float16", keep_float=["mask_proj"])
    with pytest.raises(ValueError, match=r"\['no_such_layer'\] float: the model has no such"):
        nodes_of_layers(model, ["mask_proj", "no_such_layer"])  # the converted graph's names


def test_requantize_rule_is_copy_only_when_it_is_the_identity():
    assert requantize_rule((0.1, 3), (0.1, 3), "int8") == "copy"
    assert requantize_rule((0.1 * (1 + 1e-7), 3), (0.1, 3), "int8") == "copy"
    assert requantize_rule((0.1 * (1 + 1e-3), 3), (0.1, 3), "int8") == "copy"  # 0.26 step
    assert requantize_rule((0.1 * (1 + 3e-3), 3), (0.1, 3), "int8") == "affine"
    assert requantize_rule((0.1 * (1 + 1e-6), 0), (0.1, 0), "int16") == "copy"
    assert requantize_rule((0.1 * (1 + 1e-4), 0), (0.1, 0), "int16") == "affine"
    assert requantize_rule((0.1, 3), (0.1, 4), "int8") == "affine"
