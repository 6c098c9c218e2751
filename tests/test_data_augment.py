"""Training augmentation: gains, sign flips, cross-song remixing, offsets, exact mixtures."""

import numpy as np
import pytest

from tinysep.data.augment import training_batches, training_chunks
from tinysep.data.clip import Clip

CHUNK = 1000
LENGTH = 20_000
SCALE = 100_000  # a sample's value encodes (clip, position): clip * SCALE + position + 1


def _coded_clips() -> list[Clip]:
    """Clips whose every sample says where it came from; two clips per song, four songs."""
    clips = []
    for k in range(8):
        position = np.arange(LENGTH, dtype=np.float32)
        vocals = k * SCALE + position + 1
        accompaniment = -(k * SCALE + position + 1)
        clips.append(Clip(f"s{k // 2}_1_{k % 2:02d}", vocals + accompaniment, vocals,
                          accompaniment, song=f"s{k // 2}_1"))
    return clips


def _decode(chunk: np.ndarray) -> tuple[int, int, float]:
    """(clip, offset, factor) of a chunk cut from a coded source and scaled by ``factor``."""
    factor = float(chunk[-1] - chunk[0]) / (len(chunk) - 1)  # positions step by 1 unscaled
    raw = np.abs(chunk[0] / factor) - 1
    clip = int(raw // SCALE)
    return clip, int(round(raw - clip * SCALE)), factor


def _chunks(n: int, seed: int = 0, **options) -> list[tuple[np.ndarray, ...]]:
    return list(training_chunks(_coded_clips(), CHUNK, np.random.default_rng(seed), count=n,
                                **options))


def test_mixture_is_exactly_the_sum_of_the_sources():
    for mixture, vocals, accompaniment in _chunks(200):
        assert mixture.dtype == vocals.dtype == accompaniment.dtype == np.float32
        assert mixture.shape == vocals.shape == accompaniment.shape == (CHUNK,)
        np.testing.assert_array_equal(mixture, vocals + accompaniment)


def test_gains_are_per_source_and_within_range():
    v_gain, a_gain = [], []
    for _, vocals, accompaniment in _chunks(300, sign_flip=False, remix=False):
        v_gain.append(_decode(vocals)[2])
        a_gain.append(-_decode(accompaniment)[2])  # accompaniment counts downwards
    v_gain, a_gain = np.array(v_gain), np.array(a_gain)
    for g in (v_gain, a_gain):
        assert g.min() >= 0.25 - 1e-4 and g.max() <= 1.25 + 1e-4
        assert g.min() < 0.35 and g.max() > 1.15  # the whole range is used
    assert np.mean(np.abs(v_gain - a_gain) > 0.01) > 0.9  # independent per source
    plain = [_decode(v)[2] for _, v, _ in _chunks(20, sign_flip=False, random_gain=False)]
    assert plain == [1.0] * 20


def test_sign_flips_are_per_source_and_about_half():
    v_sign, a_sign = [], []
    for _, vocals, accompaniment in _chunks(400, random_gain=False, remix=False):
        v_sign.append(np.sign(_decode(vocals)[2]))
        a_sign.append(-np.sign(_decode(accompaniment)[2]))
    v_sign, a_sign = np.array(v_sign), np.array(a_sign)
    assert set(v_sign) == set(a_sign) == {-1.0, 1.0}
    assert 0.4 < np.mean(v_sign < 0) < 0.6 and 0.4 < np.mean(a_sign < 0) < 0.6
    assert 0.35 < np.mean(v_sign != a_sign) < 0.65  # flipped independently
    unflipped = _chunks(50, random_gain=False, sign_flip=False, remix=False)
    assert all(_decode(v)[2] == 1.0 and _decode(a)[2] == -1.0 for _, v, a in unflipped)


def test_remix_pairs_vocals_and_accompaniment_of_different_songs():
    clips = _coded_clips()
    remixed = _chunks(200, random_gain=False, sign_flip=False, remix_probability=1.0)
    for _, vocals, accompaniment in remixed:
        v_clip, _, _ = _decode(vocals)
        a_clip, _, _ = _decode(accompaniment)
        assert clips[v_clip].song_id != clips[a_clip].song_id
    half = _chunks(400, random_gain=False, sign_flip=False, remix_probability=0.5)
    mixed = [_decode(v)[0] != _decode(a)[0] for _, v, a in half]
    assert 0.4 < np.mean(mixed) < 0.6
    for _, vocals, accompaniment in _chunks(100, random_gain=False, sign_flip=False, remix=False):
        assert _decode(vocals)[:2] == _decode(accompaniment)[:2]  # same clip, same time


def test_offsets_are_random_or_on_the_chunk_grid():
    offsets = [_decode(v)[1] for _, v, _ in _chunks(200, random_gain=False, sign_flip=False)]
    assert max(offsets) <= LENGTH - CHUNK
    assert np.mean(np.array(offsets) % CHUNK != 0) > 0.9
    assert len(set(offsets)) > 150
    grid = [_decode(v)[1] for _, v, _ in _chunks(200, random_gain=False, sign_flip=False,
                                                  random_offset=False)]
    assert all(o % CHUNK == 0 for o in grid) and len(set(grid)) == LENGTH // CHUNK


def test_same_seed_same_chunks_other_seed_other_chunks():
    a, b, c = _chunks(20, seed=4), _chunks(20, seed=4), _chunks(20, seed=5)
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x[0], y[0]) for x, y in zip(a, c, strict=True))


def test_short_clips_are_zero_padded_and_a_single_song_is_never_remixed():
    short = Clip("a_1_01", np.ones(300, np.float32) * 3, np.ones(300, np.float32),
                 np.ones(300, np.float32) * 2)
    chunks = training_chunks([short], 500, np.random.default_rng(0), count=5,
                             random_gain=False, sign_flip=False)
    for mixture, vocals, _ in chunks:
        np.testing.assert_array_equal(vocals[:300], 1.0)
        np.testing.assert_array_equal(vocals[300:], 0.0)
        np.testing.assert_array_equal(mixture[:300], 3.0)


def test_batches_stack_chunks():
    batches = training_batches(_coded_clips(), CHUNK, 4, np.random.default_rng(0))
    mixture, vocals, accompaniment = next(batches)
    assert mixture.shape == vocals.shape == accompaniment.shape == (4, CHUNK)
    np.testing.assert_array_equal(mixture, vocals + accompaniment)


@pytest.mark.parametrize("options, message", [
    ({"chunk_samples": 0}, "chunk_samples"),
    ({"gain_range": (1.0, 0.5)}, "gain_range"),
    ({"remix_probability": 1.5}, "remix_probability"),
])
def test_bad_options_are_named(options, message):
    args = {"chunk_samples": CHUNK, **options}
    chunk_samples = args.pop("chunk_samples")
    with pytest.raises(ValueError, match=message):
        next(training_chunks(_coded_clips(), chunk_samples, np.random.default_rng(0), **args))
    with pytest.raises(ValueError, match="at least one clip"):
        next(training_chunks([], CHUNK, np.random.default_rng(0)))
