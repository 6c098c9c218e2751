"""Baselines: output contract, what they read, and a sensible order on synthetic songs."""

from __future__ import annotations

import numpy as np
import pytest

from tinysep.baselines import METHODS, ORACLE_METHODS, get_method
from tinysep.baselines.masking import mixture_spectrogram
from tinysep.baselines.repet import beat_spectrum, nearest_frames, repeating_period
from tinysep.data.clip import Clip
from tinysep.data.synth import mix_clip, render_song
from tinysep.metrics import score_estimates, score_mixture, summarize

SR = 16000


def synthetic_clip(index: int, seconds: float, seed: int = 5) -> Clip:
    """A song from the corpus generator, vocals and accompaniment at equal energy."""
    song = render_song(seed, index, seconds)
    stereo = mix_clip(song.vocals, song.accompaniment, var_db=0.0)
    acc, voc = stereo[:, 0].copy(), stereo[:, 1].copy()
    return Clip(song.song_id, acc + voc, voc, acc)


@pytest.fixture(scope="module")
def clip() -> Clip:
    return synthetic_clip(0, 3.0)


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_returns_both_sources_at_the_clip_length(clip, name):
    out = get_method(name)(clip)
    assert set(out) == {"vocals", "accompaniment"}
    for source, audio in out.items():
        assert audio.shape == clip.mixture.shape, source
        assert np.all(np.isfinite(audio)), source
    if name != "mix":  # complementary masks: the two estimates add up to the mixture
        np.testing.assert_allclose(out["vocals"] + out["accompaniment"], clip.mixture, atol=1e-4)


@pytest.mark.parametrize("name", sorted(set(METHODS) - ORACLE_METHODS))
def test_non_oracle_methods_read_only_the_mixture(clip, name):
    blind = Clip(clip.name, clip.mixture, np.full_like(clip.vocals, np.nan),
                 np.full_like(clip.accompaniment, np.nan))
    expected, got = get_method(name)(clip), get_method(name)(blind)
    for source in expected:
        np.testing.assert_array_equal(got[source], expected[source])


@pytest.mark.parametrize("name", list(METHODS))
def test_a_silent_clip_gives_silent_finite_estimates(name):
    zeros = np.zeros(SR, dtype=np.float32)
    out = get_method(name)(Clip("silence", zeros, zeros, zeros))
    for audio in out.values():
        assert audio.shape == zeros.shape and np.all(audio == 0.0)


def test_baselines_order_sensibly_on_synthetic_songs():
    clips = [synthetic_clip(i, 5.0) for i in range(2)]
    summaries = {}
    for name in METHODS:
        records = []
        for c in clips:
            refs = {"vocals": c.vocals, "accompaniment": c.accompaniment}
            scores = score_estimates(refs, get_method(name)(c), score_mixture(refs, c.mixture))
            records.append({"samples": len(c.mixture), "sources": scores})
        summaries[name] = summarize(records)["sources"]

    def mean(name, source, key="sdr"):
        return summaries[name][source][key]["mean"]

    for source in ("vocals", "accompaniment"):
        assert mean("mix", source, "nsdr") == 0.0  # exactly: the same signals scored twice
        assert mean("irm", source) > 10.0
        for name in set(METHODS) - {"irm"}:
            assert mean("irm", source) > mean(name, source) + 5.0, (name, source)
        # the accompaniment repeats bar after bar, so REPET must beat doing nothing
        assert mean("repet", source, "nsdr") > 1.0, source
        # and no blind method is far worse than doing nothing
        for name in set(METHODS) - ORACLE_METHODS:
            assert mean(name, source, "nsdr") > -3.0, (name, source)


def test_repet_finds_the_period_of_a_repeating_pattern():
    rng = np.random.default_rng(0)
    for period_s in (0.9, 1.37, 2.0):
        pattern = np.zeros(int(period_s * SR))
        for _ in range(6):  # a few decaying noise bursts: a drum loop
            start = rng.integers(0, len(pattern) - 1600)
            pattern[start : start + 1600] += (rng.standard_normal(1600) * rng.uniform(0.3, 1.0)
                                              * np.exp(-np.arange(1600) / 600))
        loop = np.tile(pattern, int(8 / period_s) + 1)[: 8 * SR]
        # plus a quiet melody that does not repeat
        f0 = rng.choice([300.0, 400.0, 500.0, 600.0], size=len(loop) // 4000 + 1).repeat(4000)
        loop = loop + 0.05 * np.sin(2 * np.pi * np.cumsum(f0[: len(loop)]) / SR)
        _, magnitude = mixture_spectrogram(loop)
        period = repeating_period(beat_spectrum(magnitude), magnitude.shape[1])
        assert abs(period - period_s * SR / 128) <= 2, period_s


def test_nearest_frames_are_the_most_similar_ones_outside_the_excluded_band():
    rng = np.random.default_rng(1)
    features = rng.random((8, 60))
    features[:, 40] = features[:, 5] * 3.0  # frame 40 points exactly like frame 5
    rec = nearest_frames(features, k=4, min_distance=10).toarray() > 0
    assert rec.sum(axis=0).tolist() == [4] * 60
    assert rec[40, 5] and rec[5, 40]
    rows, cols = np.nonzero(rec)
    assert np.all(np.abs(rows - cols) >= 10)
    unit = features / np.linalg.norm(features, axis=0)
    sim = unit.T @ unit
    for j in (0, 33, 59):  # brute force agrees
        allowed = [i for i in range(60) if abs(i - j) >= 10]
        best = sorted(allowed, key=lambda i: -sim[i, j])[:4]
        assert set(np.flatnonzero(rec[:, j])) == set(best)


def test_unknown_method_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown separation method 'repet-xyz'.*repet-sim"):
        get_method("repet-xyz")
