"""The SDR loss's gradient flows from complex spectra to real masks without a lossy-cast
warning, and with the same values as a plain cast would give."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tensorflow as tf

from tinysep.training import spectral
from tinysep.training.spectral import separation_loss, tf_stft

SAMPLES = 2048


class _Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _loss_and_gradient(masks: tf.Variable) -> tuple[float, np.ndarray]:
    rng = np.random.default_rng(0)
    mixture = tf.constant(rng.normal(size=(1, SAMPLES)).astype(np.float32))
    sources = tf.constant(rng.normal(size=(1, 2, SAMPLES)).astype(np.float32))
    spec = tf_stft(mixture)
    frames = int(spec.shape[1])
    target = tf.abs(tf_stft(tf.reshape(sources, (2, SAMPLES))))
    target = tf.transpose(tf.reshape(target, (1, 2, frames, -1)), (0, 2, 3, 1))
    with tf.GradientTape() as tape:
        loss = separation_loss("l1+sdr", spec, masks, target, sources, 0.5)
    return float(loss), tape.gradient(loss, masks).numpy()


def _masks() -> tf.Variable:
    frames = int(tf_stft(tf.zeros((1, SAMPLES))).shape[1])
    rng = np.random.default_rng(1)
    return tf.Variable(rng.uniform(size=(1, frames, 257, 2)).astype(np.float32))


def test_sdr_loss_gradient_has_no_complex_cast_warning(monkeypatch) -> None:
    handler = _Messages()
    tf.get_logger().addHandler(handler)
    try:
        loss, gradient = _loss_and_gradient(_masks())
    finally:
        tf.get_logger().removeHandler(handler)
    assert not [m for m in handler.messages if "complex64" in m], handler.messages
    assert np.isfinite(loss) and np.abs(gradient).sum() > 0

    # the same numbers as the cast it replaces
    monkeypatch.setattr(spectral, "_as_complex", lambda real: tf.cast(real, tf.complex64))
    cast_loss, cast_gradient = _loss_and_gradient(_masks())
    assert loss == cast_loss
    np.testing.assert_array_equal(gradient, cast_gradient)


def test_the_graph_stft_follows_the_model_framing():
    """At the long framing the TensorFlow STFT and its inverse are the numpy ones; the loss
    of a long-framing model takes its spectra there, and a teacher on another framing is
    refused by name."""
    from tinysep.dsp import istft, stft
    from tinysep.models import build_model

    rng = np.random.default_rng(5)
    audio = rng.uniform(-1, 1, (1, SAMPLES)).astype(np.float32)
    spec = tf_stft(tf.constant(audio), "long1024")
    assert spec.shape == (1, SAMPLES // 128 + 7, 513)
    np.testing.assert_allclose(spec.numpy()[0], stft(audio[0], framing="long1024"), atol=2e-3)
    back = spectral.tf_istft(spec, SAMPLES, "long1024").numpy()[0]
    np.testing.assert_allclose(back, audio[0], atol=1e-4)
    np.testing.assert_allclose(back, istft(spec.numpy()[0], SAMPLES, framing="long1024"),
                               atol=1e-4)
    small = {"residual": 6, "hidden": 6, "blocks": 2, "repeats": 1}
    model = build_model("dualgate-tcn", **small, framing="long1024", pool_above=257)
    sources = tf.constant(rng.uniform(-0.3, 0.3, (1, 2, SAMPLES)).astype(np.float32))
    mixture = tf.reduce_sum(sources, axis=1)
    assert np.isfinite(float(spectral.batch_loss(model, mixture, sources, "l1+sdr", 0.01, True)))
    teacher = build_model("dualgate-tcn", **small)
    with pytest.raises(ValueError, match="teacher's framing 'hann512' is not the model's "
                       "'long1024'"):
        spectral.batch_loss(model, mixture, sources, "l1", 0.01, True, teacher=teacher,
                            teacher_weight=0.5)
