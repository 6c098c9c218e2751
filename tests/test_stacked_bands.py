"""A second band stacked on a chunk's band: the band of another song is added to every
source after the first, the first source is left as it was, the mixture stays the exact sum,
and the setting off draws nothing, so runs from before it repeat their chunks."""

from __future__ import annotations

import numpy as np

from tinysep.data.augment import drawn_chunks
from tinysep.data.clip import Clip

LENGTH = 20_000
CHUNK = 1000


def _clips() -> list[Clip]:
    """Six clips of three songs; every sample of a clip's accompaniment is the clip's
    number plus one, so a chunk's accompaniment shows which clips it holds."""
    rng = np.random.default_rng(0)
    clips = []
    for k in range(6):
        vocals = rng.standard_normal(LENGTH).astype(np.float32) * 0.1
        accompaniment = np.full(LENGTH, k + 1.0, dtype=np.float32)
        clips.append(Clip(f"c{k}", vocals + accompaniment, vocals, accompaniment,
                          song=f"song{k // 2}"))
    return clips


def _drawn(count: int, seed: int, **options):
    # no gain, sign or offset randomness, so the accompaniment's values are exact sums
    plain = {"random_gain": False, "sign_flip": False, "remix": False}
    return list(drawn_chunks(_clips(), CHUNK, np.random.default_rng(seed), count=count,
                             **{**plain, **options}))


def test_a_stacked_chunk_adds_one_other_songs_band_and_keeps_the_voice():
    clips = _clips()
    stacked = 0
    for (first, _), (mixture, vocals, accompaniment) in _drawn(300, 4, stack_probability=0.5):
        np.testing.assert_array_equal(mixture, vocals + accompaniment)
        own = clips[first].accompaniment[0]
        extra = np.unique(accompaniment - own)
        assert len(extra) == 1  # one clip's band, the whole chunk long
        if extra[0] != 0:
            stacked += 1
            other = int(round(extra[0])) - 1
            assert clips[other].song_id != clips[first].song_id
        # the voice is its own clip's, untouched
        assert any(np.array_equal(vocals, clips[first].vocals[s:s + CHUNK])
                   for s in range(LENGTH - CHUNK + 1))
    assert 0.4 * 300 < stacked < 0.6 * 300


def test_the_stacked_band_takes_a_gain_from_the_gain_range():
    """With a fixed gain of 0.5 the band is (own + 0.5 x stacked) x 0.5, so the stacked
    band's value can be read back: another song's clip, at half the level."""
    clips = _clips()
    for (first, _), (_, _, accompaniment) in _drawn(100, 5, stack_probability=1.0,
                                                    random_gain=True, gain_range=[0.5, 0.5]):
        own = clips[first].accompaniment[0]
        stacked = (2.0 * accompaniment - own) / 0.5
        np.testing.assert_allclose(stacked, stacked[0], atol=1e-5)
        other = int(round(float(stacked[0]))) - 1
        assert abs(stacked[0] - (other + 1)) < 1e-4
        assert clips[other].song_id != clips[first].song_id


def test_off_draws_nothing_so_earlier_runs_repeat_their_chunks():
    default = _drawn(40, 6, random_gain=True, sign_flip=True, remix=True)
    off = _drawn(40, 6, random_gain=True, sign_flip=True, remix=True, stack_probability=0.0)
    for (p, a), (q, b) in zip(default, off, strict=True):
        assert p == q
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
    on = _drawn(40, 6, random_gain=True, sign_flip=True, remix=True, stack_probability=0.5)
    assert any(not np.array_equal(a[2], b[2]) for (_, a), (_, b) in zip(default, on,
                                                                        strict=True))


def test_over_four_stems_every_band_stem_gets_the_same_other_clips_stem():
    """Drums, bass and other each get their own stem of one and the same stacked clip."""
    from tinysep.data.sources import STEMS

    clips = []
    for k in range(6):
        stems = {s: np.full(LENGTH, (i + 1) * 100.0 + k + 1, dtype=np.float32)
                 for i, s in enumerate(STEMS)}
        band = stems["drums"] + stems["bass"] + stems["other"]
        clips.append(Clip(f"c{k}", band + stems["vocals"], stems["vocals"], band,
                          song=f"song{k // 2}", stems={s: stems[s] for s in STEMS[1:]},
                          sources=STEMS))
    stacked = 0
    for picks, (mixture, *parts) in drawn_chunks(
            clips, CHUNK, np.random.default_rng(7), count=100, random_gain=False,
            sign_flip=False, remix=False, stack_probability=0.5, sources=STEMS):
        np.testing.assert_array_equal(mixture, sum(parts))
        first = picks[0]
        assert parts[0][0] == clips[first].source("vocals")[0]
        added = [float(part[0] - clips[first].source(stem)[0])
                 for stem, part in zip(STEMS[1:], parts[1:], strict=True)]
        if added == [0.0, 0.0, 0.0]:
            continue
        stacked += 1
        # stem i of clip k holds (i + 1) x 100 + k + 1: the same k for every band stem
        sources_of = {round(value) - (i + 2) * 100 - 1 for i, value in enumerate(added)}
        assert len(sources_of) == 1
        other = sources_of.pop()
        assert clips[other].song_id != clips[first].song_id
    assert 30 < stacked < 70
