"""A trained model carried to another framing or pooling of its bins: each feature's place on
the frequency axis, weights read off there, projections scaled by feature width, the input
normalisation measured again, and a carried model that still separates."""

from __future__ import annotations

import numpy as np
import pytest
import tf_keras as keras
from train_helpers import TINY

from tinysep.data.loaders import load_split
from tinysep.data.synth import write_corpus
from tinysep.dsp import magnitude, stft
from tinysep.metrics.bss import si_sdr
from tinysep.models import copy_matching_layers, load_model, make_config, model_from_config
from tinysep.models import separate as separate_clip
from tinysep.models.reframing import (
    feature_places,
    input_norm_features,
    refit_input_norm,
    resample_features,
    resample_logits,
)
from tinysep.models.registry import feature_layouts_differ, read_config, resolved_params
from tinysep.pretrained import default_model_path

SHORT = resolved_params(make_config("dualgate-tcn", "tiny", **TINY))
LONG = resolved_params(make_config("dualgate-tcn", "tiny", **TINY, framing="long1024",
                                   pool_above=257))


def _model(**options) -> keras.Model:
    return model_from_config(make_config("dualgate-tcn", "tiny", **{**TINY, **options}))


def test_feature_places_of_a_plain_and_a_pooled_framing():
    centres, widths = feature_places(SHORT)
    np.testing.assert_allclose(centres, np.arange(257) / 512)
    np.testing.assert_allclose(widths, 1 / 512)
    centres, widths = feature_places(LONG)
    assert len(centres) == 257 + 128
    np.testing.assert_allclose(centres[:257], np.arange(257) / 1024)
    np.testing.assert_allclose(widths[:257], 1 / 1024)
    # a pair of bins 257 + 2j and 258 + 2j is seen midway between them, twice as wide
    np.testing.assert_allclose(centres[257:], (257.5 + 2 * np.arange(128)) / 1024)
    np.testing.assert_allclose(widths[257:], 2 / 1024)
    assert centres[-1] < 0.5


def test_resampling_reads_a_smooth_curve_off_at_the_new_places():
    ramp = 3.0 + 10.0 * np.arange(257) / 512  # linear in frequency: interpolation is exact
    values = np.stack([ramp, -ramp])  # along axis 1
    out = resample_features(values, 1, SHORT, LONG)
    centres = feature_places(LONG)[0]
    np.testing.assert_allclose(out[0], 3.0 + 10.0 * centres, rtol=1e-6)
    np.testing.assert_allclose(out[1], -out[0])
    np.testing.assert_allclose(resample_features(values, 1, SHORT, SHORT), values)
    with pytest.raises(ValueError, match="385 features"):
        resample_features(values, 1, LONG, SHORT)


def test_a_projection_adds_up_the_same_spectrum_on_either_framing():
    """A smooth projection of a smooth spectrum gives the same sum from 257 bins as from the
    385 features carried to, though the long framing has twice the bins below 4 kHz."""
    def curve(f):
        return np.cos(9 * f) + 2 * f

    weights = np.sin(20 * np.arange(257) / 512)[None, None, :, None]  # (1, 1, features, 1)
    carried = resample_features(weights, 2, SHORT, LONG, summed=True)
    short_sum = float(np.sum(weights[0, 0, :, 0] * curve(feature_places(SHORT)[0])))
    long_sum = float(np.sum(carried[0, 0, :, 0] * curve(feature_places(LONG)[0])))
    assert long_sum == pytest.approx(short_sum, rel=0.02)
    unscaled = resample_features(weights, 2, SHORT, LONG)
    unscaled_sum = float(np.sum(unscaled[0, 0, :, 0] * curve(feature_places(LONG)[0])))
    assert abs(unscaled_sum - short_sum) > 0.2 * abs(short_sum)  # fine bins would count twice


def test_logits_are_resampled_per_source():
    ramp = np.arange(257) / 512
    bias = np.stack([ramp, 1 - ramp], axis=-1).reshape(-1)  # source fastest
    out = resample_logits(bias, 2, SHORT, LONG).reshape(-1, 2)
    centres = feature_places(LONG)[0]
    np.testing.assert_allclose(out[:, 0], centres, atol=1e-6)
    np.testing.assert_allclose(out[:, 1], 1 - centres, atol=1e-6)
    with pytest.raises(ValueError, match="3 logits"):
        resample_logits(bias, 3, SHORT, LONG)


def test_copy_carries_every_layer_to_the_long_pooled_framing():
    source, target = _model(), _model(framing="long1024", pool_above=257)
    assert feature_layouts_differ(source, target)
    assert not feature_layouts_differ(source, _model())
    assert copy_matching_layers(source, target) == []
    for name in ("s0b1_out", "s0b0_in_gate"):
        for a, b in zip(source.get_layer(name).get_weights(),
                        target.get_layer(name).get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    kernel = source.get_layer("in_proj").get_weights()[0]
    carried = target.get_layer("in_proj").get_weights()[0]
    assert carried.shape == (1, 1, 385, TINY["residual"])
    # feature 2 of the long framing sits on bin 1 of the short one, at half its width
    np.testing.assert_allclose(carried[0, 0, 2], 0.5 * kernel[0, 0, 1], rtol=1e-6)
    # the pair of bins 257 and 258 of 1024 sits at bin 128.75 of 512, as wide as one
    np.testing.assert_allclose(carried[0, 0, 257],
                               0.25 * kernel[0, 0, 128] + 0.75 * kernel[0, 0, 129],
                               rtol=1e-5, atol=1e-7)


def test_same_count_of_other_features_is_resampled_not_copied():
    """Pooling all but the first bin of the long framing gives 257 features too: the weights
    fit by shape, but each sits elsewhere on the frequency axis, so they are resampled."""
    source, target = _model(), _model(framing="long1024", pool_above=1)
    gamma = np.linspace(0.5, 1.5, 257).astype(np.float32)
    norm = source.get_layer("input_norm")
    norm.set_weights([gamma, *norm.get_weights()[1:]])
    copy_matching_layers(source, target)
    carried = target.get_layer("input_norm").get_weights()[0]
    assert carried.shape == gamma.shape
    assert not np.allclose(carried, gamma)
    np.testing.assert_allclose(carried, 0.5 + feature_places(target.tinysep_config["params"])[0]
                               * 512 / 256, rtol=1e-5)


def test_refit_input_norm_measures_the_features_the_model_sees():
    model = _model(framing="long1024", pool_above=257)
    rng = np.random.default_rng(4)
    mixtures = [rng.normal(0, 0.1, 8000).astype(np.float32) for _ in range(2)]
    frames = refit_input_norm(model, mixtures)
    seen = np.concatenate([np.asarray(input_norm_features(model)(
        magnitude(stft(m, framing="long1024"))[None]))[0] for m in mixtures])
    assert frames == len(seen)
    gain = model.tinysep_config["params"]["input_gain"]
    fine = np.log1p(gain * magnitude(stft(mixtures[0], framing="long1024")))[:, :257]
    np.testing.assert_allclose(seen[: len(fine), :257], fine, rtol=1e-4, atol=1e-5)
    _, _, mean, variance = model.get_layer("input_norm").get_weights()
    np.testing.assert_allclose(mean, seen.mean(axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(variance, seen.var(axis=0), rtol=1e-3, atol=1e-6)
    with pytest.raises(ValueError, match="at least one mixture"):
        refit_input_norm(model, [])


def test_the_shipped_model_carried_to_the_short_framing_still_separates(tmp_path):
    """The shipped long-framing model, carried to the 512-sample framing and re-measured on
    other songs, separates far better than the same model fresh, and not far below itself."""
    root = tmp_path / "corpus"
    write_corpus(root, songs=6, seconds=6.0, seed=21, progress=False)
    clips = load_split(root, split="train", progress=False)
    source = load_model(default_model_path())
    options = dict(read_config(default_model_path())["options"])
    options.pop("framing", None)
    options.pop("pool_above", None)
    carried = model_from_config(make_config("dualgate-tcn", "tiny", **options))
    fresh = model_from_config(make_config("dualgate-tcn", "tiny", **options))
    assert copy_matching_layers(source, carried) == []
    refit_input_norm(carried, (clip.mixture for clip in clips[1:]))

    def score(model):
        clip = clips[0]
        est = separate_clip(model, clip.mixture)
        return np.mean([si_sdr(getattr(clip, k), est[k]) for k in ("vocals", "accompaniment")])

    shipped, moved, untrained = score(source), score(carried), score(fresh)
    assert moved > untrained + 2.0, (shipped, moved, untrained)
    assert moved > shipped - 1.5, (shipped, moved, untrained)
