"""Chunks of one source alone: the augmentation silences all sources but one, the SDR loss
scores the estimate of a silent source by its leak against the chunk's own level, and no
teacher is asked about a chunk whose answer is known. A stored run from before the setting
resumes as it was."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from train_helpers import tiny_config

from tinysep.data.augment import training_chunks
from tinysep.data.clip import Clip
from tinysep.data.loaders import load_split
from tinysep.data.synth import write_corpus
from tinysep.models import model_from_config
from tinysep.training.config import DEFAULT_AUGMENT, TrainConfig, config_differences
from tinysep.training.data import batch_for_step
from tinysep.training.spectral import (
    SDR_EPSILON,
    SILENT_LEAK_FLOOR,
    batch_loss,
    sdr_db,
    separation_loss,
    silence_epsilon,
    tf_istft,
    tf_stft,
)

SAMPLES = 8000


def _clips() -> list[Clip]:
    rng = np.random.default_rng(0)
    clips = []
    for k in range(6):
        vocals = rng.standard_normal(20_000).astype(np.float32) * 0.1
        accompaniment = rng.standard_normal(20_000).astype(np.float32) * 0.2
        clips.append(Clip(f"c{k}", vocals + accompaniment, vocals, accompaniment,
                          song=f"song{k // 2}"))
    return clips


def _chunks(count: int, seed: int, **options) -> list[tuple[np.ndarray, ...]]:
    return list(training_chunks(_clips(), 1000, np.random.default_rng(seed), count=count,
                                **options))


def test_a_solo_chunk_keeps_one_source_and_its_mixture_is_that_source():
    chunks = _chunks(400, 3, solo_probability=0.4)
    alone = {0: 0, 1: 0}
    for mixture, *sources in chunks:
        sounding = [k for k, s in enumerate(sources) if np.any(s != 0)]
        assert sounding, "a chunk never loses every source"
        np.testing.assert_array_equal(mixture, sum(sources))
        if len(sounding) == 1:
            alone[sounding[0]] += 1
            np.testing.assert_array_equal(mixture, sources[sounding[0]])
    solos = alone[0] + alone[1]
    assert 0.3 * 400 < solos < 0.5 * 400
    assert min(alone.values()) > 0.35 * solos  # either source may be the one kept
    plain = _chunks(200, 3, solo_probability=0.0)
    assert all(np.all(s != 0) for _, *sources in plain for s in sources)
    default = _chunks(50, 3)
    for a, b in zip(default, plain[:50], strict=True):  # off draws nothing: the same chunks
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("setting", ["solo_probability", "stack_probability"])
@pytest.mark.parametrize("value", [1.5, 1.01, -0.1, "half"])
def test_a_bad_chunk_probability_is_named(setting, value, tmp_path):
    """The probabilities that silence sources or stack a second band, refused by name."""
    with pytest.raises(ValueError, match=f"{setting} must be a number in"):
        _chunks(1, 0, **{setting: value})
    config = tiny_config(tmp_path, augment={**DEFAULT_AUGMENT, setting: value})
    with pytest.raises(ValueError, match=f"augment: {setting}"):
        config.validate()


@pytest.mark.parametrize("level", [1.0, 0.01])
def test_a_silent_source_is_scored_by_its_leak_against_the_chunk(level):
    """A leak 30 dB below the mixture reads -3 dB, 20 dB below about -10.4 dB, silence 0 dB,
    at a loud and a quiet level alike; a sounding reference keeps the small constant."""
    rng = np.random.default_rng(1)
    mixture = tf.constant(rng.standard_normal((1, SAMPLES)).astype(np.float32) * level)
    power = tf.reduce_mean(tf.square(mixture), axis=-1)
    silent = tf.zeros_like(mixture)
    epsilon = silence_epsilon(silent, power)
    assert float(epsilon[0]) == pytest.approx(SILENT_LEAK_FLOOR * float(power[0]), rel=1e-5)
    for leak_db, expected in ((-30.0, -3.01), (-20.0, -10.41)):
        leak = mixture * 10.0 ** (leak_db / 20.0)
        assert float(sdr_db(silent, leak, epsilon)[0]) == pytest.approx(expected, abs=0.02)
    assert float(sdr_db(silent, silent, epsilon)[0]) == pytest.approx(0.0, abs=1e-6)
    assert float(silence_epsilon(mixture, power)[0]) == pytest.approx(SDR_EPSILON)


def test_the_loss_asks_the_mask_of_a_silent_source_to_close():
    """On accompaniment alone the vocal mask that passes less scores better, by the leak's
    dB; the accompaniment's own score is the plain SDR."""
    rng = np.random.default_rng(2)
    noise = rng.standard_normal((1, SAMPLES)).astype(np.float32) * 0.5  # loud: no epsilon
    spec = tf_stft(tf.constant(noise))
    accompaniment = tf_istft(spec, SAMPLES)  # what the masks can rebuild exactly
    targets = tf.stack([tf.zeros_like(accompaniment), accompaniment], axis=1)
    magnitudes = tf.stack([tf.zeros_like(tf.abs(spec)), tf.abs(spec)], axis=-1)

    def loss(vocal_gain: float) -> float:
        masks = tf.stack([tf.fill(tf.shape(tf.abs(spec)), vocal_gain),
                          tf.fill(tf.shape(tf.abs(spec)), 1.0 - vocal_gain)], axis=-1)
        return float(separation_loss("sdr", spec, masks, magnitudes, targets, 0.0))

    # vocal mask g: vocals leak g^2 of the mixture's power (-20 log10 g dB below it), the
    # accompaniment estimate is (1 - g) x itself: SDR -20 log10(g)
    for gain in (0.1, 0.03):
        leak = gain**2
        vocals = 10 * np.log10(SILENT_LEAK_FLOOR / (leak + SILENT_LEAK_FLOOR))
        accomp = -20 * np.log10(gain)
        assert loss(gain) == pytest.approx(-(vocals + accomp) / 2, abs=0.01)
    assert loss(0.03) < loss(0.1)


def test_no_teacher_is_asked_about_a_chunk_with_a_silent_source(tmp_path):
    """With a teacher, a chunk of one source alone scores as without it; a chunk of both
    sources still mixes the teacher in."""
    root = tmp_path / "c"
    write_corpus(root, songs=3, seconds=4.0, seed=2, progress=False)
    clips = load_split(root, split="train", progress=False)
    mixture, sources = batch_for_step(clips, 7, 1, 2, SAMPLES, DEFAULT_AUGMENT)
    sources[0, 0] = 0.0  # chunk 0: the accompaniment alone
    mixture = sources.sum(axis=1)
    keras.utils.set_random_seed(1)
    model = model_from_config(tiny_config(root).model_config())
    teacher = model_from_config(tiny_config(root).model_config())

    def loss(row: int, teach: bool) -> float:
        return float(batch_loss(model, tf.constant(mixture[row:row + 1]),
                                tf.constant(sources[row:row + 1]), "sdr", 0.0, False,
                                teacher if teach else None, 0.6))

    assert loss(0, True) == pytest.approx(loss(0, False), abs=1e-4)
    assert abs(loss(1, True) - loss(1, False)) > 0.1


def test_a_run_stored_before_a_setting_existed_resumes_unchanged(tmp_path):
    """A stored config that does not name a setting is at its default, so resuming it with
    today's defaults finds no difference."""
    stored = tiny_config(tmp_path).to_json()
    del stored["augment"]["solo_probability"]
    loaded = TrainConfig.from_json(stored)
    assert loaded.augment["solo_probability"] == 0.0
    assert config_differences(loaded, tiny_config(tmp_path)) == []
    changed = tiny_config(tmp_path).replace(
        augment={**DEFAULT_AUGMENT, "solo_probability": 0.2})
    assert config_differences(loaded, changed) == [
        f"augment: stored {loaded.augment!r}, given {changed.augment!r}"]
