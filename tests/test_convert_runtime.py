"""The host bundle runner: streaming int8 equals whole-clip int8 and tracks float; the
float stream equals the float whole-clip model; the contract's arithmetic; eval hook."""

from __future__ import annotations

import numpy as np
import pytest
from convert_helpers import SMALL, clips, fitted_model_folder, held_out_features, load, workdir

from calibration.representative import RepresentativeSet
from convert.export import export_bundle
from convert.quantize import quantize_whole_clip
from convert.runtime import (
    BundleRunner,
    measure_latency,
    run_whole_clip,
    separate_with_bundle,
    separator_for_path,
)
from firmware_host.bundle.quantization import requantize, round_half_away
from firmware_host.bundle.tensors import StatePair, TensorSpec
from tinysep.dsp import magnitude, stft
from tinysep.models import (
    build_model,
    compress_magnitude,
    iterate_streaming,
    make_streaming_model,
    predict_masks,
    run_streaming,
)

FRAMES = 96


@pytest.fixture(scope="module")
def calibrated_on_one_clip():
    """A bundle and a whole-clip model calibrated on exactly the same frames."""
    model = load("dualgate-tcn")
    features = held_out_features(FRAMES)
    stream = make_streaming_model(model, 1)
    samples = [inputs for inputs, _ in iterate_streaming(stream, features)]
    out = workdir() / "bundle-one-clip"
    export_bundle(model, out, frames_per_invoke=1, calibration=RepresentativeSet(1, samples),
                  force=True, progress=False)
    whole, _ = quantize_whole_clip(model, [features], FRAMES)
    return model, out, whole, features


def test_streaming_int8_equals_whole_clip_int8_and_tracks_float(calibrated_on_one_clip):
    model, out, whole, features = calibrated_on_one_clip
    runner = BundleRunner(out)
    streamed = runner.run(features)
    at_once = run_whole_clip(whole, features)
    step = runner.manifest["output"]["scale"]
    # The same int8 computation (states are copied byte for byte): identical here, up to
    # a rare one-step difference if float rounding ever split a scale between the two.
    assert np.mean(streamed == at_once) > 0.999
    assert np.max(np.abs(streamed - at_once)) <= step + 1e-7
    expected = run_streaming(make_streaming_model(model, 1), features)
    error = np.mean(np.abs(streamed - expected))
    assert error < 0.02
    assert np.mean(np.abs(streamed - at_once)) < error / 10


@pytest.mark.parametrize("frames_per_invoke", [1, 3])
def test_float_stream_equals_float_whole_clip(frames_per_invoke):
    model = build_model("unet-se-sru", **SMALL["unet-se-sru"])  # any weights will do
    mag = magnitude(stft(clips("test")[0].mixture))[:50]
    stream = make_streaming_model(model, frames_per_invoke)
    np.testing.assert_allclose(run_streaming(stream, compress_magnitude(mag, 100.0)),
                               predict_masks(model, mag), atol=2e-5)


def test_runner_streams_with_any_invoke_size(calibrated_on_one_clip):
    model, _, _, features = calibrated_on_one_clip
    out = workdir() / "bundle-k4"
    export_bundle(model, out, frames_per_invoke=4, calibration=list(clips("train")),
                  calibration_frames=128, force=True, progress=False)
    runner = BundleRunner(out)
    masks = runner.run(features[:-1])  # a tail shorter than one invoke
    assert masks.shape == (FRAMES - 1, 257, 2)
    expected = run_streaming(make_streaming_model(model, 4), features[:-1])
    assert np.mean(np.abs(masks - expected)) < 0.02
    # A fresh run restarts from zero states: same input, same output.
    np.testing.assert_array_equal(runner.run(features[:-1]), masks)


def test_separate_with_bundle_reconstructs_the_mixture(calibrated_on_one_clip):
    _, out, _, _ = calibrated_on_one_clip
    mixture = clips("test")[0].mixture[:16000]
    estimates = separate_with_bundle(out, mixture)
    assert set(estimates) == {"vocals", "accompaniment"}
    assert all(e.shape == mixture.shape for e in estimates.values())
    # Softmax masks sum to one up to one int8 step each: the estimates add up to the mix.
    residual = estimates["vocals"] + estimates["accompaniment"] - mixture
    assert np.sqrt(np.mean(residual**2)) < 0.02 * np.sqrt(np.mean(mixture**2))
    assert np.std(estimates["vocals"]) > 0.05 * np.std(mixture)


def test_contract_arithmetic():
    np.testing.assert_array_equal(round_half_away(np.array([-2.5, -0.5, 0.5, 1.5, 2.4])),
                                  [-3, -1, 1, 2, 2])
    entry = TensorSpec("x", 0, [3], "int8", scale=0.5, zero_point=-10)
    np.testing.assert_array_equal(entry.quantize(np.array([0.25, 100.0, -100.0])),
                                  [-9, 127, -128])
    state_in = TensorSpec("s", 1, [4], "int8", scale=0.1, zero_point=5)
    state_out = TensorSpec("s_out", 2, [4], "int8", scale=0.2, zero_point=-3)
    q_out = np.array([-3, 0, 60, -128], np.int8)
    # x = (q - zp_out) * s_out; q_in = round(x / s_in) + zp_in, clipped.
    np.testing.assert_array_equal(StatePair(state_in, state_out, "affine").carry(q_out),
                                  [5, 11, 127, -128])
    np.testing.assert_array_equal(requantize(q_out, (0.2, -3), (0.1, 5), "int8"),
                                  [5, 11, 127, -128])
    np.testing.assert_array_equal(StatePair(state_in, state_out, "copy").carry(q_out), q_out)


def test_latency_measurement(calibrated_on_one_clip):
    _, out, _, _ = calibrated_on_one_clip
    latency = measure_latency(out, invokes=50, warmup=5)
    assert 0 < latency["invoke_us_per_hop"] <= latency["step_us_per_hop"]
    assert latency["realtime_factor"] == pytest.approx(8000 / latency["invoke_us_per_hop"])


def test_eval_resolves_model_paths_for_bundles_and_keras_folders(calibrated_on_one_clip):
    from tinysep import methods

    _, out, _, _ = calibrated_on_one_clip
    clip = clips("test")[0]
    saved = dict(methods.SEPARATOR_FACTORIES)
    try:
        # tinysep alone runs saved Keras models only (an eval command may have registered more)
        methods.register_separator_factory("model", methods.keras_model_separator)
        with pytest.raises(ValueError, match="is a deploy bundle"):
            methods.resolve_separator(f"model:{out}")
        keras_estimates = methods.resolve_separator(
            f"model:{fitted_model_folder('dualgate-tcn')}")(clip)
        methods.register_separator_factory("model", separator_for_path)
        bundle_estimates = methods.resolve_separator(f"model:{out}")(clip)
        for source in ("vocals", "accompaniment"):
            assert bundle_estimates[source].shape == clip.mixture.shape
            # int8 and float separations of the same model agree closely.
            diff = bundle_estimates[source] - keras_estimates[source]
            assert np.sqrt(np.mean(diff**2)) < 0.1 * np.sqrt(np.mean(keras_estimates[source]**2))
        with pytest.raises(ValueError, match="needs a path"):
            methods.resolve_separator("model:")
    finally:
        methods.SEPARATOR_FACTORIES.clear()
        methods.SEPARATOR_FACTORIES.update(saved)
        methods._separators.clear()


def test_a_model_file_no_interpreter_can_load_is_named(tmp_path):
    from convert.runtime import host_interpreter
    from firmware_host.board.runtime import load_runtime

    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"TFL3" + bytes(200))
    with pytest.raises(ValueError, match="junk.tflite: the TFLite interpreter cannot load it"):
        host_interpreter(junk)
    with pytest.raises(ValueError, match="<memory>: the TFLite interpreter cannot load it"):
        host_interpreter(junk.read_bytes())
    runtime = load_runtime()
    with pytest.raises((ValueError, RuntimeError), match=r"junk.tflite: .* cannot load it"):
        runtime.make_interpreter(str(junk))
