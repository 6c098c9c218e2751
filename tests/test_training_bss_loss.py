"""The ``bss-sdr`` training loss is BSS-eval v3's SDR, the number evaluation reports: the same
value as the metric on filtered, noisy and band-limited signals, forgiving of a short filter
where plain SDR is not, and differentiable through a model's masks."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from scipy import signal

from tinysep.metrics.bss import bss_eval
from tinysep.training.spectral import (
    negative_bss_sdr,
    negative_sdr,
    separation_loss,
    tf_stft,
)

SAMPLES = 16000


def _signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    low, high = signal.butter(6, 150 / 8000)
    bass = signal.lfilter(low, high, rng.standard_normal(SAMPLES)) * 0.3
    voice = rng.standard_normal(SAMPLES) * 0.1
    return {"bass": bass.astype(np.float32), "voice": voice.astype(np.float32),
            "noise": rng.standard_normal(SAMPLES).astype(np.float32) * 0.02}


def _loss(function, reference: np.ndarray, estimate: np.ndarray) -> float:
    return float(function(tf.constant(reference[None]), tf.constant(estimate[None])))


def test_the_loss_is_minus_the_bss_eval_sdr_evaluation_reports() -> None:
    s = _signals()
    references = {"filtered voice, bass leaking": s["voice"], "bass, voice leaking": s["bass"]}
    estimates = {
        "filtered voice, bass leaking":
            np.convolve(s["voice"], [0.8, 0.3, -0.1], "same") + 0.3 * s["bass"],
        "bass, voice leaking": s["bass"] + 0.5 * s["voice"] + s["noise"],
    }
    sdr, _, _ = bss_eval(np.stack(list(references.values())),
                         np.stack(list(estimates.values())))
    for (case, reference), expected in zip(references.items(), sdr, strict=True):
        got = -_loss(negative_bss_sdr, reference, estimates[case].astype(np.float32))
        assert got == pytest.approx(expected, abs=0.05), case


def test_a_short_filter_of_the_source_costs_nothing_under_bss_sdr_but_plain_sdr_counts_it(
) -> None:
    voice = _signals()["voice"]
    voice[-8:] = 0.0  # the filtered copy ends within the chunk
    coloured = np.convolve(voice, [0.5, 0.4, 0.2, -0.1], "full")[:SAMPLES].astype(np.float32)
    assert -_loss(negative_bss_sdr, voice, coloured) > 30.0  # near the epsilon floor
    assert -_loss(negative_sdr, voice, coloured) < 10.0


def test_a_silent_source_reads_as_under_plain_sdr() -> None:
    s = _signals()
    silent = np.zeros(SAMPLES, np.float32)
    assert _loss(negative_bss_sdr, silent, s["noise"]) == pytest.approx(
        _loss(negative_sdr, silent, s["noise"]), abs=1e-3)
    assert _loss(negative_bss_sdr, silent, silent) == pytest.approx(0.0, abs=1e-6)


def test_the_loss_trains_masks_towards_the_sources() -> None:
    s = _signals()
    sources = tf.constant(np.stack([s["voice"], s["bass"]])[None])
    mixture = tf.reduce_sum(sources, axis=1)
    spec = tf_stft(mixture)
    frames = int(spec.shape[1])
    target = tf.abs(tf_stft(sources[0]))
    target = tf.transpose(target, (1, 2, 0))[None]
    logits = tf.Variable(tf.zeros((1, frames, 257, 2)))
    optimizer = tf.keras.optimizers.Adam(0.1)
    losses = []
    for _ in range(15):
        with tf.GradientTape() as tape:
            loss = separation_loss("bss-sdr", spec, tf.nn.softmax(logits), target, sources, 0.0)
        gradient = tape.gradient(loss, logits)
        assert np.isfinite(gradient.numpy()).all()
        optimizer.apply_gradients([(gradient, logits)])
        losses.append(float(loss))
    assert losses[-1] < losses[0] - 3.0  # at least 3 dB of BSS-eval SDR gained
