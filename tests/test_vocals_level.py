"""The voice's level against the band: ``vocals_level_db`` scales the first source (the
vocals) of each chunk and leaves the others as they were, the mixture stays the exact sum,
the setting off draws nothing (runs from before it repeat their chunks), and a range out of
bounds is refused by name."""

from __future__ import annotations

import numpy as np
import pytest

from tinysep.data.augment import drawn_chunks
from tinysep.data.clip import Clip
from tinysep.data.sources import STEMS
from tinysep.training.config import TrainConfig

LENGTH = 1000  # one chunk: every chunk is its whole clip
CHUNK = 1000


def _clips(sources: int = 2) -> list[Clip]:
    """Four clips of four songs; a clip's every source is noise of a known level, so a chunk's
    sources can be compared with the clip they came from."""
    rng = np.random.default_rng(1)
    clips = []
    for k in range(4):
        parts = [rng.standard_normal(LENGTH).astype(np.float32) * 0.1 for _ in range(sources)]
        if sources == 2:
            clips.append(Clip(f"c{k}", parts[0] + parts[1], parts[0], parts[1], song=f"s{k}"))
        else:
            stems = dict(zip(STEMS, parts, strict=True))
            clips.append(Clip(f"c{k}", sum(parts), parts[0], sum(parts[1:]), song=f"s{k}",
                              stems=stems))
    return clips


def _drawn(clips, count: int, seed: int, **options):
    # no gain, sign or remix randomness: each chunk is its whole clip
    plain = {"random_offset": False, "random_gain": False, "sign_flip": False, "remix": False}
    return list(drawn_chunks(clips, CHUNK, np.random.default_rng(seed), count=count,
                             **{**plain, **options}))


def _gain_db(chunk: np.ndarray, original: np.ndarray) -> float:
    """The gain in dB that makes ``original``'s first CHUNK samples into ``chunk``."""
    scale = float(np.dot(chunk, original[:CHUNK]) / np.dot(original[:CHUNK], original[:CHUNK]))
    np.testing.assert_allclose(chunk, original[:CHUNK] * scale, rtol=1e-5, atol=1e-7)
    return 20.0 * np.log10(scale)


def test_the_voice_moves_within_its_range_and_the_band_stays():
    clips = _clips()
    gains = []
    for (first, _), (mixture, vocals, accompaniment) in _drawn(clips, 200, 3,
                                                             vocals_level_db=[-8.0, -2.0]):
        np.testing.assert_array_equal(mixture, vocals + accompaniment)
        np.testing.assert_array_equal(accompaniment, clips[first].accompaniment[:CHUNK])
        gains.append(_gain_db(vocals, clips[first].vocals))
    gains = np.array(gains)
    assert gains.min() >= -8.0 - 1e-4 and gains.max() <= -2.0 + 1e-4
    # drawn across the range, not fixed at one end
    assert gains.min() < -7.0 and gains.max() > -3.0 and abs(gains.mean() + 5.0) < 0.6


def test_a_single_value_is_a_fixed_offset():
    clips = _clips()
    for (first, _), (_, vocals, _) in _drawn(clips, 20, 4, vocals_level_db=[-6.0, -6.0]):
        assert _gain_db(vocals, clips[first].vocals) == pytest.approx(-6.0, abs=1e-4)


def test_with_four_stems_only_the_vocals_move():
    clips = _clips(sources=4)
    for (first, *_), (mixture, vocals, *band) in _drawn(clips, 40, 5, sources=STEMS,
                                                       vocals_level_db=[-10.0, 0.0]):
        assert -10.0 - 1e-4 <= _gain_db(vocals, clips[first].source("vocals")) <= 1e-4
        for name, part in zip(STEMS[1:], band, strict=True):
            np.testing.assert_array_equal(part, clips[first].source(name)[:CHUNK])
        np.testing.assert_allclose(mixture, vocals + sum(band), rtol=1e-6, atol=1e-7)


def test_off_draws_nothing_so_earlier_runs_repeat():
    clips = _clips()
    options = {"random_offset": True, "random_gain": True, "sign_flip": True, "remix": True,
               "eq_probability": 0.5, "level_range_db": [-20.0, 0.0]}
    before = _drawn(clips, 30, 6, **options)
    off = _drawn(clips, 30, 6, vocals_level_db=[0.0, 0.0], **options)
    on = _drawn(clips, 30, 6, vocals_level_db=[-6.0, 0.0], **options)
    for (picks_a, parts_a), (picks_b, parts_b) in zip(before, off, strict=True):
        assert picks_a == picks_b
        for a, b in zip(parts_a, parts_b, strict=True):
            np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a[1][1], b[1][1]) for a, b in zip(before, on, strict=True))


@pytest.mark.parametrize("value", [[-30.0, 0.0], [0.0, 25.0], [-2.0, -6.0], [-6.0], "loud",
                                   [float("nan"), 0.0]])
def test_a_range_out_of_bounds_is_refused_by_name(value):
    with pytest.raises(ValueError, match="vocals_level_db"):
        next(iter(drawn_chunks(_clips(), CHUNK, np.random.default_rng(0), count=1,
                               vocals_level_db=value)))
    with pytest.raises(ValueError, match="vocals_level_db"):
        TrainConfig(data="x", augment={"vocals_level_db": value}).validate()
