"""A separator with a look ahead (``mask_delay``): its masks belong to earlier frames, in
whole-clip separation and in the training loss; streaming it is refused by name."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tinysep.dsp import HOP_SAMPLES, N_BINS
from tinysep.models import (
    make_config,
    make_streaming_model,
    mask_delay_frames,
    model_from_config,
    predict_masks,
    separate,
)
from tinysep.training.spectral import batch_loss, separation_loss, tf_stft

SMALL = {"residual": 6, "hidden": 6, "blocks": 2, "repeats": 1, "se_window": 2}
DELAY = 3


def _twins():
    """A model without a look ahead and one with ``DELAY`` frames, with the same weights."""
    keras.utils.set_random_seed(4)
    plain = model_from_config(make_config("dualgate-tcn", "tiny", **SMALL))
    ahead = model_from_config(make_config("dualgate-tcn", "tiny", **SMALL, mask_delay=DELAY))
    ahead.set_weights(plain.get_weights())
    return plain, ahead


def test_each_frame_gets_the_mask_computed_that_many_frames_later():
    plain, ahead = _twins()
    assert (mask_delay_frames(plain), mask_delay_frames(ahead)) == (0, DELAY)
    magnitude = np.random.default_rng(0).random((40, N_BINS)).astype(np.float32)
    padded = np.concatenate([magnitude, np.zeros((DELAY, N_BINS), np.float32)])
    masks = predict_masks(ahead, magnitude)
    assert masks.shape == (40, N_BINS, 2)
    np.testing.assert_allclose(masks, predict_masks(plain, padded)[DELAY:], atol=1e-6)
    assert np.abs(masks - predict_masks(plain, magnitude)).max() > 1e-3
    mixture = np.random.default_rng(1).standard_normal(4000).astype(np.float32) * 0.1
    estimates = separate(ahead, mixture)
    assert {k: v.shape for k, v in estimates.items()} == {"vocals": (4000,),
                                                          "accompaniment": (4000,)}
    np.testing.assert_allclose(estimates["vocals"] + estimates["accompaniment"], mixture,
                               atol=1e-4)


def test_the_training_loss_is_taken_where_the_delayed_masks_reach():
    """The loss of a delayed model is the plain loss of its masks moved back onto their
    frames, over the chunk less the look ahead; taught by itself it is near the ceiling."""
    plain, ahead = _twins()
    rng = np.random.default_rng(2)
    sources = tf.constant(rng.standard_normal((2, 2, 4096)).astype(np.float32) * 0.1)
    mixture = tf.reduce_sum(sources, axis=1)
    kept = 4096 - DELAY * HOP_SAMPLES
    spec = tf_stft(mixture[:, :kept])
    frames = int(spec.shape[1])
    masks = plain(tf.abs(tf_stft(mixture)), training=False)[:, DELAY:DELAY + frames]
    expected = float(separation_loss("sdr", spec, masks, None, sources[..., :kept], 0.0))
    delayed = float(batch_loss(ahead, mixture, sources, "sdr", 0.0, False))
    assert delayed == pytest.approx(expected, abs=1e-4)
    assert abs(delayed - float(batch_loss(plain, mixture, sources, "sdr", 0.0, False))) > 1e-3
    assert float(batch_loss(ahead, mixture, sources, "sdr", 0.0, False, ahead, 1.0)) < -30.0
    with pytest.raises(ValueError, match="too short for a look ahead of 3 frames"):
        batch_loss(ahead, mixture[:, :400], sources[..., :400], "sdr", 0.0, False)


def test_a_model_that_looks_ahead_does_not_stream():
    _, ahead = _twins()
    with pytest.raises(ValueError, match="looks 3 frames ahead \\(mask_delay\\)"):
        make_streaming_model(ahead)


@pytest.mark.parametrize("value", [-1, True, 1.5, "2"])
def test_a_bad_delay_is_refused_by_name(value):
    with pytest.raises(ValueError, match="mask_delay must be a whole number from 0"):
        make_config("dualgate-tcn", "tiny", **SMALL, mask_delay=value)


def test_the_model_list_calls_a_look_ahead_offline_only(capsys):
    """Same weights and MACs as without it, but no board can run it: not within the budget."""
    from cli.main import main

    assert main(["models", "--model", "dualgate-tcn", "--preset", "tiny",
                 "--option", "mask_delay=16", "--json", "-"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["rows"]
    assert row["options"] == {"mask_delay": 16} and row["params"] == 205_990
    assert row["streamable"] is False and row["fits_mcu_budget"] is False
