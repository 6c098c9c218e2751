"""Whole models: the streaming form equals the whole-clip form, the models are causal,
and the state description matches the streaming model's real inputs and outputs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_models_support import randomize

from tinysep.dsp import N_BINS
from tinysep.models import (
    bin_masks,
    build_model,
    compress_magnitude,
    make_streaming_model,
    predict_masks,
    resolved_params,
    run_streaming,
    stream_features,
    streaming_spec,
)
from tinysep.models.streaming_spec import StreamingSpec, find_streaming_spec

SMALL_TCN = {"residual": 8, "hidden": 8, "blocks": 3, "repeats": 1}
SMALL_UNET = {"channels": [4, 8], "units": 6}

CASES = [
    ("dualgate-tcn", "tiny", {}),  # the default deployable model, full size
    ("dualgate-tcn", "tiny", {**SMALL_TCN, "attention": "sk", "norm": "group"}),
    ("dualgate-tcn", "tiny", {**SMALL_TCN, "attention": "cbam", "mask": "sigmoid"}),
    ("dualgate-tcn", "tiny", {**SMALL_TCN, "attention": "self"}),
    ("dualgate-tcn", "tiny", {**SMALL_TCN, "attention": "none", "input_gate": False}),
    ("dualgate-tcn", "tiny", {**SMALL_TCN, "encoder": [4, 6], "refine": 4}),
    ("dualgate-tcn", "tiny", {**SMALL_TCN, "refine": 4, "background": 4}),
    ("dualgate-tcn", "tiny", {**SMALL_TCN, "encoder": [4], "se_window": 1, "mask": "anchored"}),
    ("dualgate-tcn", "tiny", {**SMALL_TCN, "framing": "long1024", "pool_above": 257,
                              "mask": "anchored"}),
    ("dualgate-tcn", "tiny", {**SMALL_TCN, "framing": "long1024", "pool_above": 1}),
    ("unet-se-sru", "tiny", {}),  # full size: SRU, GroupNorm, SE
    ("unet-se-sru", "tiny", {**SMALL_UNET, "recurrent": "lstm", "norm": "batch"}),
    ("unet-se-sru", "tiny", {**SMALL_UNET, "recurrent": "gru", "norm": "none", "se": False}),
    ("unet-se-sru", "tiny", {**SMALL_UNET, "patch": 3, "time_kernel": 3, "mask": "sigmoid"}),
]


def _magnitudes(frames: int, seed: int = 0, bins: int = N_BINS) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Spectrogram-like: a few loud bins over a noise floor, varying over time.
    mag = rng.gamma(0.5, 0.05, (frames, bins))
    mag[:, rng.integers(0, bins, 12)] += rng.uniform(1, 40, (frames, 12))
    return mag.astype(np.float32)


@pytest.mark.parametrize(("name", "preset", "options"), CASES)
def test_streaming_equals_whole_clip(name, preset, options):
    model = randomize(build_model(name, preset, **options), seed=7, scale=0.2)
    frames = 40 if not options else 14
    bins = int(model.input_shape[-1])
    assert bins == (513 if options.get("framing") == "long1024" else N_BINS)
    mag = _magnitudes(frames, bins=bins)
    expected = predict_masks(model, mag)
    assert expected.shape == (frames, bins, 2)
    assert 0.0 <= expected.min() and expected.max() <= 1.0
    # The masks are not saturated, so equality below is a real check.
    assert np.mean((expected > 0.01) & (expected < 0.99)) > 0.5
    gain = resolved_params(model.tinysep_config)["input_gain"]
    for frames_per_invoke in (1, 4):
        stream = make_streaming_model(model, frames_per_invoke)
        features = stream_features(stream, compress_magnitude(mag, gain))
        got = bin_masks(stream, run_streaming(stream, features))
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    if options.get("mask") == "sigmoid":  # the float-only form with compression inside
        raw = make_streaming_model(model, 4, input="magnitude")
        np.testing.assert_allclose(run_streaming(raw, mag), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["dualgate-tcn", "unet-se-sru"])
def test_whole_clip_model_is_causal(name):
    options = SMALL_TCN if name == "dualgate-tcn" else SMALL_UNET
    model = randomize(build_model(name, **options), seed=8)
    mag = _magnitudes(20, seed=1)
    later = mag.copy()
    later[12:] = _magnitudes(8, seed=2)
    a, b = predict_masks(model, mag), predict_masks(model, later)
    np.testing.assert_allclose(a[:12], b[:12], atol=1e-6)
    assert np.max(np.abs(a[12:] - b[12:])) > 1e-3


def test_bidirectional_option_uses_the_future_and_does_not_stream():
    model = build_model("unet-se-sru", bidirectional=True, **SMALL_UNET)
    randomize(model, seed=9, scale=0.6)
    mag = _magnitudes(20, seed=1)
    later = mag.copy()
    later[12:] = _magnitudes(8, seed=2)
    change = np.max(np.abs(predict_masks(model, mag)[:12] - predict_masks(model, later)[:12]))
    assert change > 1e-4  # causal models change by < 1e-6 (test above)
    with pytest.raises(ValueError, match="bidirectional"):
        make_streaming_model(model)


@pytest.mark.parametrize("frames_per_invoke", [1, 3])
def test_state_description_matches_the_streaming_model(frames_per_invoke):
    stream = make_streaming_model(build_model("dualgate-tcn", **SMALL_TCN), frames_per_invoke)
    spec = streaming_spec(stream)
    inputs = {t.name.split(":")[0]: tuple(t.shape) for t in stream.inputs}
    outputs = dict(zip(stream.output_names, (tuple(t.shape) for t in stream.outputs), strict=True))
    assert inputs.pop("features") == (1, frames_per_invoke, N_BINS)
    assert outputs.pop("masks") == (1, frames_per_invoke, N_BINS, 2)
    assert sorted(inputs) == sorted(s.input for s in spec.states)
    assert sorted(outputs) == sorted(s.output for s in spec.states)
    for state in spec.states:
        assert inputs[state.input] == state.shape == outputs[state.output]
        assert state.output == f"{state.input}_out"
    # The dilated depthwise contexts: (kernel - 1) * dilation frames of `hidden` channels.
    dw = {s.input: s.frames for s in spec.states if s.input.endswith("_dw_state")}
    assert dw == {"s0b0_dw_state": 2, "s0b1_dw_state": 4, "s0b2_dw_state": 8}
    record = spec.to_json()
    assert record["frames_per_invoke"] == frames_per_invoke
    assert record["input"]["transform"]["kind"] == "log1p"
    assert record["output"]["sources"] == ["vocals", "accompaniment"]
    assert record["state_values"] == sum(int(np.prod(s["shape"])) for s in record["states"])


def test_the_spec_is_typed_frozen_and_kept_beside_the_model():
    model = build_model("dualgate-tcn", **SMALL_TCN)
    stream = make_streaming_model(model, 2)
    spec = streaming_spec(stream)
    assert isinstance(spec, StreamingSpec)
    assert (spec.sources, spec.hop, spec.n_fft) == (("vocals", "accompaniment"), 128, 512)
    assert (spec.input_name, spec.output_name, spec.frames_per_invoke) == ("features", "masks", 2)
    assert isinstance(spec.states, tuple) and spec.states
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.frames_per_invoke = 3
    with pytest.raises(TypeError):
        spec.input["name"] = "magnitude"  # a read-only view
    assert not any("streaming" in name for name in vars(stream))  # nothing set on the model
    assert find_streaming_spec(model) is None
    with pytest.raises(ValueError, match="not a tinysep streaming model"):
        streaming_spec(model)
    assert streaming_spec(make_streaming_model(model, 2)) == spec  # same model, same spec
    with pytest.raises(ValueError, match="frames_per_invoke"):
        StreamingSpec(0, {"name": "x", "shape": []}, {"name": "y", "shape": []})


def test_streaming_rejects_bad_frames_per_invoke():
    model = build_model("dualgate-tcn", **SMALL_TCN)
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="frames_per_invoke"):
            make_streaming_model(model, bad)
    with pytest.raises(ValueError, match="input must be one of"):
        make_streaming_model(model, 1, input="waveform")


POOLED_LONG = {**SMALL_TCN, "framing": "long1024", "pool_above": 257, "mask": "anchored"}


def test_a_pooled_stream_takes_pooled_features_and_gives_pair_masks():
    """The bundle's form of a pooled model: no pooling or spreading in its graph, the
    features pooled as the board pools them (equal to the whole-clip model's own pooling),
    one mask per position; the float-only magnitude form keeps them inside."""
    import tf_keras as keras

    from firmware_host.bundle.features import input_features, pool_pairs

    model = randomize(build_model("dualgate-tcn", "tiny", **POOLED_LONG), seed=7, scale=0.2)
    stream = make_streaming_model(model, 2)
    spec = streaming_spec(stream)
    assert spec.input["shape"] == [1, 2, 385] and spec.output["shape"] == [1, 2, 385, 2]
    assert spec.input["transform"]["pool_above"] == 257 == spec.output["pool_above"]
    names = {layer.name for layer in stream.layers}
    assert not names & {"fine_bins", "upper_bins", "upper_pool", "pooled_feats",
                        "fine_logits", "upper_twice", "logits_all_bins"}
    assert {"upper_pool", "logits_all_bins"} <= {layer.name for layer in model.layers}
    # the board's pooling (float32 (a + b) / 2) gives the whole-clip model's pooled features
    # bit for bit
    mag = _magnitudes(9, bins=513)
    probe = keras.Model(model.inputs, [model.get_layer("compress").output,
                                       model.get_layer("pooled_feats").output])
    compressed, pooled = (np.asarray(t)[0] for t in probe(mag[None], training=False))
    np.testing.assert_array_equal(pool_pairs(compressed, 257), pooled)
    board = input_features(mag, "log1p", 100.0, 257)
    assert board.shape == (9, 385) and board.dtype == np.float32
    np.testing.assert_allclose(board, pooled, atol=1e-6, rtol=0)
    # pair masks: both bins of a pair get the same masks once spread
    masks = run_streaming(stream, stream_features(stream, compressed))
    assert masks.shape == (9, 385, 2)
    spread = bin_masks(stream, masks)
    np.testing.assert_array_equal(spread[:, 257::2], spread[:, 258::2])
    np.testing.assert_allclose(spread, predict_masks(model, mag), atol=1e-5, rtol=0)
    raw = make_streaming_model(model, 2, input="magnitude")
    assert "pool_above" not in streaming_spec(raw).output
    assert streaming_spec(raw).input["shape"] == [1, 2, 513]
    np.testing.assert_allclose(run_streaming(raw, mag), predict_masks(model, mag), atol=1e-5,
                               rtol=0)
