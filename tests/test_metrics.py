"""Metrics: cross-checks against fast_bss_eval, analytic cases, silence, NSDR/GNSDR, summaries."""

from __future__ import annotations

import json

import fast_bss_eval
import fast_bss_eval.numpy
import numpy as np
import pytest
from scipy.signal import lfilter

from tinysep.metrics import (
    METRIC_LIMIT_DB,
    SILENT_ESTIMATE,
    SILENT_REFERENCE,
    bss_eval,
    rms_dbfs,
    score_estimates,
    score_mixture,
    si_sdr,
    summarize,
)

N = 2 * 16000  # two seconds at 16 kHz


def coloured(seed: int, n: int = N) -> np.ndarray:
    """Noise through a random 2-pole resonator: audio-like, not white."""
    rng = np.random.default_rng(seed)
    r, theta = 0.95, rng.uniform(0.1, 2.5)
    x = lfilter([1.0], [1.0, -2 * r * np.cos(theta), r * r], rng.standard_normal(n))
    return 0.1 * x / np.std(x)


def at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``noise`` scaled so that ``signal`` is ``snr_db`` above it."""
    return noise * np.sqrt(np.sum(signal**2) / np.sum(noise**2) / 10 ** (snr_db / 10))


@pytest.fixture(scope="module")
def sources():
    return {"vocals": coloured(1), "accompaniment": coloured(2)}


def test_bss_eval_matches_fast_bss_eval_called_directly(sources):
    rng = np.random.default_rng(3)
    v, a = sources["vocals"], sources["accompaniment"]
    ests = np.stack([v + 0.3 * a + 0.05 * rng.standard_normal(N),
                     a + 0.2 * v + 0.02 * rng.standard_normal(N)])
    refs = np.stack([v, a])
    ours = bss_eval(refs, ests)
    sdr, sir, sar, perm = fast_bss_eval.bss_eval_sources(refs, ests, filter_length=512)
    assert list(perm) == [0, 1]  # the right assignment, so the library agrees on pairing
    np.testing.assert_allclose(ours[0], sdr, atol=1e-6)
    np.testing.assert_allclose(ours[1], sir, atol=1e-6)
    np.testing.assert_allclose(ours[2], sar, atol=1e-6)
    # and the clip-level scoring uses exactly these numbers
    scores = score_estimates(sources, {"vocals": ests[0], "accompaniment": ests[1]})
    assert scores["vocals"]["sdr"] == pytest.approx(sdr[0], abs=1e-6)
    assert scores["accompaniment"]["sar"] == pytest.approx(sar[1], abs=1e-6)


def test_white_noise_at_known_snr_gives_that_sdr(sources):
    rng = np.random.default_rng(4)
    v, a = sources["vocals"], sources["accompaniment"]
    est = {"vocals": v + at_snr(v, rng.standard_normal(N), 10.0),
           "accompaniment": a + at_snr(a, rng.standard_normal(N), 20.0)}
    scores = score_estimates(sources, est)
    # 1024 filter taps can absorb ~1024/N of the noise: a few hundredths of a dB
    assert scores["vocals"]["sdr"] == pytest.approx(10.0, abs=0.3)
    assert scores["vocals"]["sar"] == pytest.approx(10.0, abs=0.3)
    assert scores["accompaniment"]["sdr"] == pytest.approx(20.0, abs=0.3)
    # only the part of the noise that 512 filter taps of the other source can fit counts
    # as interference: about 512 / N of it
    assert scores["vocals"]["sir"] == pytest.approx(10.0 + 10 * np.log10(N / 512), abs=1.0)
    assert scores["vocals"]["si_sdr"] == pytest.approx(10.0, abs=0.3)


def test_scaled_reference_is_perfect(sources):
    est = {"vocals": -0.25 * sources["vocals"], "accompaniment": 3.0 * sources["accompaniment"]}
    scores = score_estimates(sources, est)
    for name in ("vocals", "accompaniment"):
        assert scores[name]["sdr"] > 90.0
        # SI-SDR takes the gain (and sign) out as well
        assert scores[name]["si_sdr"] == METRIC_LIMIT_DB


def test_leakage_of_the_other_source_hurts_sir_not_sar(sources):
    rng = np.random.default_rng(5)
    v, a = sources["vocals"], sources["accompaniment"]
    leak = {"vocals": v + at_snr(v, a, 15.0), "accompaniment": a}
    noisy = {"vocals": v + at_snr(v, rng.standard_normal(N), 15.0), "accompaniment": a}
    s_leak = score_estimates(sources, leak)["vocals"]
    s_noisy = score_estimates(sources, noisy)["vocals"]
    assert s_leak["sir"] == pytest.approx(15.0, abs=0.3)
    assert s_leak["sar"] > 40.0
    assert s_noisy["sar"] == pytest.approx(15.0, abs=0.3)
    assert s_noisy["sir"] > 30.0
    assert s_leak["sdr"] == pytest.approx(s_noisy["sdr"], abs=0.5)


def test_si_sdr_matches_fast_bss_eval(sources):
    rng = np.random.default_rng(6)
    ref = sources["vocals"] + 0.01  # a DC offset: zero-mean handling must agree
    est = 0.7 * ref + 0.05 * rng.standard_normal(N) + sources["accompaniment"] * 0.2
    # the package-level dispatcher wants torch for si_sdr; call its numpy backend
    direct = fast_bss_eval.numpy.si_sdr(ref[None], est[None], zero_mean=True)
    assert si_sdr(ref, est) == pytest.approx(float(direct[0]), abs=1e-6)


def test_mixture_nsdr_is_exactly_zero_and_nsdr_is_the_sdr_gain(sources):
    mixture = sources["vocals"] + sources["accompaniment"]
    mix_scores = score_mixture(sources, mixture)
    # the mixture's SDR for a source is that source's level over the other one
    level = 10 * np.log10(np.sum(sources["vocals"] ** 2) / np.sum(sources["accompaniment"] ** 2))
    assert mix_scores["vocals"]["sdr"] == pytest.approx(level, abs=0.2)
    assert mix_scores["vocals"]["sar"] == pytest.approx(METRIC_LIMIT_DB, abs=1e-3)
    as_estimate = score_estimates(sources, {"vocals": mixture, "accompaniment": mixture},
                                  mix_scores)
    assert as_estimate["vocals"]["nsdr"] == 0.0
    assert as_estimate["accompaniment"]["nsdr"] == 0.0
    better = {"vocals": sources["vocals"] + 0.1 * sources["accompaniment"],
              "accompaniment": sources["accompaniment"]}
    scores = score_estimates(sources, better, mix_scores)
    assert scores["vocals"]["nsdr"] == pytest.approx(
        scores["vocals"]["sdr"] - mix_scores["vocals"]["sdr"], abs=1e-12)
    assert scores["vocals"]["nsdr"] > 15.0


def test_silent_source_is_skipped_and_the_other_scored_alone(sources):
    rng = np.random.default_rng(7)
    refs = {"vocals": 1e-6 * rng.standard_normal(N), "accompaniment": sources["accompaniment"]}
    assert rms_dbfs(refs["vocals"]) < -100
    est = {"vocals": 0.1 * rng.standard_normal(N),
           "accompaniment": refs["accompaniment"] + at_snr(refs["accompaniment"],
                                                           rng.standard_normal(N), 12.0)}
    scores = score_estimates(refs, est, score_mixture(refs, refs["accompaniment"]))
    assert scores["vocals"]["skipped"] == SILENT_REFERENCE
    assert all(scores["vocals"][k] is None for k in ("sdr", "sir", "sar", "si_sdr", "nsdr"))
    acc = scores["accompaniment"]
    assert acc["skipped"] is None
    assert acc["sir"] is None  # no interfering reference: undefined, not infinite
    assert acc["sdr"] == pytest.approx(12.0, abs=0.3)
    # (one source: the library's SIR is infinite unless clamped, as ours is)
    direct = fast_bss_eval.bss_eval_sources(refs["accompaniment"][None], est["accompaniment"][None],
                                            filter_length=512, clamp_db=METRIC_LIMIT_DB)
    assert acc["sdr"] == pytest.approx(float(direct[0][0]), abs=1e-6)


def test_silent_clip_and_silent_estimate_are_counted_and_summaries_stay_finite(sources):
    zeros = np.zeros(N)
    silent = score_estimates({"vocals": zeros, "accompaniment": zeros},
                             {"vocals": zeros, "accompaniment": zeros})
    assert {s["skipped"] for s in silent.values()} == {SILENT_REFERENCE}
    mixture = sources["vocals"] + sources["accompaniment"]
    mute = score_estimates(sources, {"vocals": zeros, "accompaniment": mixture},
                           score_mixture(sources, mixture))
    assert mute["vocals"]["skipped"] == SILENT_ESTIMATE
    assert mute["accompaniment"]["nsdr"] == 0.0  # the other estimate is unaffected

    summary = summarize([
        {"samples": N, "sources": silent},
        {"samples": N, "sources": mute},
    ])
    assert summary["clips"] == 2 and summary["silent_clips"] == 1
    vocals = summary["sources"]["vocals"]
    assert vocals["skipped"] == {"silent_reference": 1, "silent_estimate": 1}
    assert vocals["sdr"] == {"mean": None, "median": None, "n": 0}
    assert vocals["gnsdr"] is None
    assert summary["sources"]["accompaniment"]["sdr"]["n"] == 1
    json.dumps(summary, allow_nan=False)  # no NaN or inf anywhere


def test_gnsdr_weights_nsdr_by_clip_length():
    def record(samples, nsdr):
        entry = {"sdr": nsdr + 1.0, "sir": 5.0, "sar": 6.0, "si_sdr": nsdr, "nsdr": nsdr,
                 "skipped": None}
        return {"samples": samples, "sources": {"vocals": entry, "accompaniment": dict(entry)}}

    summary = summarize([record(1000, 2.0), record(3000, 6.0), record(1000, 10.0)])
    vocals = summary["sources"]["vocals"]
    assert vocals["nsdr"]["mean"] == pytest.approx(6.0)
    assert vocals["gnsdr"] == pytest.approx((2 * 1000 + 6 * 3000 + 10 * 1000) / 5000)
    assert vocals["sdr"]["median"] == pytest.approx(7.0)
    assert summary["samples"] == 5000


def test_bad_estimates_get_clear_errors(sources):
    short = {"vocals": sources["vocals"][:-5], "accompaniment": sources["accompaniment"]}
    with pytest.raises(ValueError, match=r"estimates\['vocals'\].*shape"):
        score_estimates(sources, short)
    nan = {"vocals": np.full(N, np.nan), "accompaniment": sources["accompaniment"]}
    with pytest.raises(ValueError, match="NaN"):
        score_estimates(sources, nan)
    with pytest.raises(ValueError, match="lack source 'accompaniment'"):
        score_estimates(sources, {"vocals": sources["vocals"]})
    tiny = {name: x[:1000] for name, x in sources.items()}
    with pytest.raises(ValueError, match="1000 samples are too short"):
        score_estimates(tiny, tiny)


def test_rms_dbfs_of_a_full_scale_sine():
    t = np.arange(16000) / 16000
    assert rms_dbfs(np.sin(2 * np.pi * 440 * t)) == pytest.approx(-3.0103, abs=1e-3)
    assert rms_dbfs(np.zeros(10)) == float("-inf")


def test_table_has_a_block_per_source_and_reports_skips(sources):
    from tinysep.metrics import format_table

    zeros = np.zeros(N)
    mixture = sources["vocals"] + sources["accompaniment"]
    refs_silent_vocals = {"vocals": zeros, "accompaniment": sources["accompaniment"]}
    records = [
        {"samples": N, "sources": score_estimates(sources, {"vocals": mixture,
                                                             "accompaniment": mixture},
                                                  score_mixture(sources, mixture))},
        {"samples": N, "sources": score_estimates(refs_silent_vocals, {
            "vocals": mixture, "accompaniment": mixture})},
    ]
    summary = summarize(records) | {"failed": 2}
    text = format_table({"mix": summary}, title="demo")
    lines = text.splitlines()
    assert lines[0] == "demo"
    acc, voc = lines.index("Accompaniment (dB)"), lines.index("Vocals (dB)")
    assert acc < voc
    vocals_row = next(line for line in lines[voc:] if line.startswith("mix "))
    cells = vocals_row.split()
    assert cells[7] == "0.00" and cells[-1] == "1"  # NSDR over the one scored clip
    assert "mix: skipped 1 silent reference, 2 failed" in text
    assert "metric limit" in text  # the mixture's SAR sits at the limit


def test_linearly_dependent_references_are_refused_by_name(sources):
    """Two identical stems leave BSS-eval's projection undefined: a ValueError that says so,
    not numpy's bare "Singular matrix"."""
    same = {"vocals": sources["vocals"], "accompaniment": 0.5 * sources["vocals"]}
    with pytest.raises(ValueError, match="references are linearly dependent"):
        score_estimates(same, same)
    # references that differ are still scored
    assert np.all(np.isfinite(bss_eval(np.stack(list(sources.values())),
                                       np.stack(list(sources.values())))[0]))
