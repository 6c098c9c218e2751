"""Separators with N sources: one mask per configured source, whole-clip and streaming
forms alike, four-stem presets within the MCU budget, and the saved default models (no
``sources`` key) still meaning vocals + accompaniment."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_models_support import pair, randomize, stream_through

from tinysep.data.sources import STEMS, check_sources, parse_sources
from tinysep.dsp import N_BINS
from tinysep.models import (
    build_model,
    compress_magnitude,
    count_params,
    load_model,
    macs_per_hop,
    make_config,
    make_streaming_model,
    predict_masks,
    resolved_params,
    run_streaming,
    save_model,
    separate,
    streaming_spec,
)
from tinysep.models.blocks import mask_head
from tinysep.models.registry import model_sources
from tinysep.models.summary import MCU_BUDGET, stored_preset_sizes

SMALL = {
    "dualgate-tcn": {"residual": 8, "hidden": 8, "blocks": 2, "repeats": 1},
    "unet-se-sru": {"channels": [4, 8], "units": 6},
}
FOUR = list(STEMS)


def _magnitudes(frames: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mag = rng.gamma(0.5, 0.05, (frames, N_BINS))
    mag[:, rng.integers(0, N_BINS, 12)] += rng.uniform(1, 40, (frames, 12))
    return mag.astype(np.float32)


def test_source_sets_must_make_up_the_mixture_once():
    assert parse_sources("vocals, drums,bass,other") == ("vocals", "drums", "bass", "other")
    assert check_sources(["accompaniment", "vocals"]) == ("accompaniment", "vocals")
    for bad, message in [("vocals,drums", "exactly once"), ("vocals,piano", "unknown"),
                         ("vocals,vocals,accompaniment", "twice"),
                         ("vocals,accompaniment,drums", "exactly once"), ("", "exactly once")]:
        with pytest.raises(ValueError, match=message):
            parse_sources(bad)


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("mask", ["softmax", "sigmoid", "anchored"])
def test_four_source_model_streams_like_the_whole_clip(name, mask):
    model = randomize(build_model(name, sources=FOUR, mask=mask, **SMALL[name]), seed=3,
                      scale=0.2)
    assert model_sources(model) == tuple(FOUR)
    mag = _magnitudes(14)
    expected = predict_masks(model, mag)
    assert expected.shape == (14, N_BINS, 4)
    # Masks differ between sources (not one mask copied four times) and are not saturated.
    assert np.min([np.abs(expected[..., i] - expected[..., 0]).max() for i in (1, 2, 3)]) > 1e-3
    assert np.mean((expected > 0.01) & (expected < 0.99)) > 0.5
    if mask != "sigmoid":
        np.testing.assert_allclose(expected.sum(axis=-1), 1.0, atol=1e-5)
    gain = resolved_params(model.tinysep_config)["input_gain"]
    for frames_per_invoke in (1, 4):
        stream = make_streaming_model(model, frames_per_invoke)
        spec = streaming_spec(stream)
        assert spec.output["sources"] == FOUR
        assert spec.output["shape"] == [1, frames_per_invoke, N_BINS, 4]
        got = run_streaming(stream, compress_magnitude(mag, gain))
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("frames_per_invoke", [1, 3])
@pytest.mark.parametrize("activation", ["softmax", "sigmoid", "anchored"])
def test_mask_head_with_four_sources_in_both_forms(activation, frames_per_invoke):
    logits = 3 if activation == "anchored" else 4  # the last source's logit is fixed at 0
    whole, stream, graph = pair(lambda g, x: mask_head(x, N_BINS, activation), (N_BINS, logits),
                                frames_per_invoke)
    x = np.random.default_rng(2).normal(0, 2, (1, 6, N_BINS, logits)).astype(np.float32)
    expected = np.asarray(whole(x, training=False))
    assert expected.shape == (1, 6, N_BINS, 4)
    np.testing.assert_allclose(stream_through(stream, graph, x), expected, atol=1e-6)
    if activation == "sigmoid":
        np.testing.assert_allclose(expected, 1 / (1 + np.exp(-x)), atol=1e-6)
        return
    if activation == "anchored":
        x = np.concatenate([x, np.zeros_like(x[..., :1])], axis=-1)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    np.testing.assert_allclose(expected, e / e.sum(axis=-1, keepdims=True), atol=1e-6)


def test_four_stem_separation_adds_up_to_the_mixture():
    rng = np.random.default_rng(4)
    mixture = (0.3 * rng.standard_normal(4000)).astype(np.float32)
    model = randomize(build_model("dualgate-tcn", sources=FOUR, **SMALL["dualgate-tcn"]),
                      seed=5, scale=0.2)
    out = separate(model, mixture)
    assert list(out) == FOUR
    np.testing.assert_allclose(sum(out.values()), mixture, atol=1e-4)
    assert min(np.max(np.abs(v - mixture)) for v in out.values()) > 0.01


@pytest.mark.parametrize("name", sorted(SMALL))
def test_four_stem_preset_fits_the_budget_and_is_stored(name):
    model = build_model(name, "tiny4")
    assert model_sources(model) == tuple(FOUR)
    assert count_params(model) <= MCU_BUDGET["params"]
    assert macs_per_hop(model) <= MCU_BUDGET["macs_per_hop"]
    row = stored_preset_sizes()[json.dumps([name, "tiny4", {}], sort_keys=True)]
    assert row["params"] == count_params(model)
    assert row["macs_per_hop"] == macs_per_hop(model)
    assert row["fits_mcu_budget"] is True


def test_only_the_last_layer_grows_with_the_sources():
    two = build_model("dualgate-tcn", **SMALL["dualgate-tcn"])
    four = build_model("dualgate-tcn", sources=FOUR, **SMALL["dualgate-tcn"])
    # mask_proj: residual x (S x 257) weights + S x 257 biases
    assert count_params(four) - count_params(two) == (8 + 1) * 2 * N_BINS
    # Anchored masks need one logit fewer per bin than there are sources.
    anchored = build_model("dualgate-tcn", sources=FOUR, mask="anchored", **SMALL["dualgate-tcn"])
    assert count_params(four) - count_params(anchored) == (8 + 1) * N_BINS


def test_saved_config_without_sources_means_the_two_default_sources(tmp_path):
    model = randomize(build_model("unet-se-sru", **SMALL["unet-se-sru"]), seed=1)
    folder = save_model(model, tmp_path / "m")
    record = json.loads((folder / "config.json").read_text())
    assert record["params"]["sources"] == ["vocals", "accompaniment"]
    del record["params"]["sources"]  # a folder saved before sources existed
    (folder / "config.json").write_text(json.dumps(record))
    loaded = load_model(folder)
    assert model_sources(loaded) == ("vocals", "accompaniment")
    mag = _magnitudes(10)
    np.testing.assert_array_equal(predict_masks(loaded, mag), predict_masks(model, mag))


def test_a_four_stem_model_round_trips_its_sources(tmp_path):
    model = randomize(build_model("unet-se-sru", "tiny4", **SMALL["unet-se-sru"]), seed=2)
    loaded = load_model(save_model(model, tmp_path / "m"))
    assert model_sources(loaded) == tuple(FOUR)
    mag = _magnitudes(10)
    np.testing.assert_array_equal(predict_masks(loaded, mag), predict_masks(model, mag))


def test_bad_sources_option_names_the_problem():
    with pytest.raises(ValueError, match="exactly once"):
        make_config("dualgate-tcn", sources=["vocals", "drums"])
    with pytest.raises(ValueError, match="list of source names"):
        make_config("unet-se-sru", sources="vocals,drums,bass,other")
