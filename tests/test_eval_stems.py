"""Evaluation per stem: scores for the four stems, partial reference methods (HPSS drums,
low-pass bass), the IRM per stem, BSS-eval v4 beside the whole-clip values, the summary's
median of medians and the per-stem table, from the library and from `tinysep eval`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli.main import main as cli_main
from tinysep.baselines.simple import separate_irm as classic_irm
from tinysep.data.clip import Clip
from tinysep.data.loaders import find_clips
from tinysep.data.sources import STEMS
from tinysep.data.synth import write_corpus
from tinysep.dsp import N_FFT, SAMPLE_RATE, stft
from tinysep.evaluate import evaluate_clip
from tinysep.metrics import format_table, score_estimates, score_mixture, summarize
from tinysep.metrics.framewise import FRAMEWISE_KEYS
from tinysep.metrics.references import (
    LOWPASS_HZ,
    separate_hpss_drums,
    separate_irm,
    separate_lowpass_bass,
    separate_mix,
)
from tinysep.metrics.scores import NOT_ESTIMATED


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("evalstems") / "synth"
    write_corpus(root, songs=3, seconds=5.0, seed=4, progress=False, stems=True)
    return root


@pytest.fixture(scope="module")
def clip(corpus) -> Clip:
    return find_clips(corpus, split="all", sources=STEMS)[0].load()


def _tones(seconds: float = 3.0) -> dict[str, np.ndarray]:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    rng = np.random.default_rng(0)
    return {"vocals": 0.3 * np.sin(2 * np.pi * 440 * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t)),
            "drums": 0.2 * rng.normal(size=t.size) * (np.sin(2 * np.pi * 2 * t) > 0.8),
            "bass": 0.3 * np.sin(2 * np.pi * 70 * t),
            "other": 0.2 * np.sin(2 * np.pi * 1300 * t)}


def test_four_stem_scores_with_the_v4_figure_by_hand():
    refs = _tones()
    mixture = sum(refs.values())
    scores = score_mixture(refs, mixture, framewise=True)
    assert list(scores) == list(STEMS)
    for name, ref in refs.items():
        # v4 SDR of the mixture as estimate: per 1 s window |s|^2 / |mix - s|^2, median.
        windows = []
        for f in range(3):
            cut = slice(f * SAMPLE_RATE, (f + 1) * SAMPLE_RATE)
            s, e = ref[cut], (mixture - ref)[cut]
            windows.append(10 * np.log10(s @ s / (e @ e)))
        assert scores[name]["sdr_v4"] == pytest.approx(np.median(windows), abs=1e-6)
        assert set(FRAMEWISE_KEYS) <= set(scores[name])
    # Without framewise the records keep their former keys.
    assert "sdr_v4" not in score_mixture(refs, mixture)["bass"]


def test_partial_estimates_score_only_what_they_estimate():
    refs = _tones()
    mixture = sum(refs.values())
    est = {"bass": refs["bass"] + 0.01 * refs["vocals"]}
    scores = score_estimates(refs, est, score_mixture(refs, mixture), partial=True)
    leak = 0.01 * refs["vocals"]
    expected = 10 * np.log10(refs["bass"] @ refs["bass"] / (leak @ leak))  # ~ 40 dB
    assert scores["bass"]["sdr"] == pytest.approx(expected, abs=0.05)
    assert scores["bass"]["nsdr"] > 15
    for name in ("vocals", "drums", "other"):
        assert scores[name]["skipped"] == NOT_ESTIMATED and scores[name]["sdr"] is None
    with pytest.raises(ValueError, match="lack source 'vocals'"):
        score_estimates(refs, est)


def test_summary_takes_the_median_of_the_clips_medians():
    def record(v4: float | None, sdr: float) -> dict:
        scores = {s: {"sdr": sdr, "sdr_v4": v4, "skipped": None} for s in STEMS}
        scores["bass"] = {"sdr": None, "skipped": NOT_ESTIMATED}
        return {"samples": 16000, "sources": scores}

    summary = summarize([record(1.0, 0.0), record(9.0, 3.0), record(4.0, 9.0),
                         record(None, 1.0)])
    assert list(summary["sources"]) == list(STEMS)
    assert summary["sources"]["drums"]["sdr_v4"] == {"mean": pytest.approx(14 / 3),
                                                    "median": 4.0, "n": 3}
    assert summary["sources"]["vocals"]["sdr"]["mean"] == pytest.approx(13 / 4)
    assert summary["sources"]["bass"]["skipped"]["not_estimated"] == 4


def test_reference_methods_per_stem(clip):
    assert clip.sources == STEMS
    irm = separate_irm(clip)
    assert list(irm) == list(STEMS)
    np.testing.assert_allclose(sum(irm.values()), clip.mixture, atol=1e-4)
    scores = score_estimates({s: clip.source(s) for s in STEMS}, irm)
    assert all(scores[s]["sdr"] > 5 for s in STEMS if scores[s]["skipped"] is None)
    mix = separate_mix(clip)
    assert all(np.array_equal(v, clip.mixture) for v in mix.values())
    drums = separate_hpss_drums(clip)
    assert list(drums) == ["drums"] and drums["drums"].shape == clip.mixture.shape
    bass = separate_lowpass_bass(clip)["bass"]
    # Above twice the cut-off the estimate keeps < 0.1 % of the mixture's energy there
    # (re-analysis smears the brick wall a little), below it nearly all of it.
    high = int(np.ceil(2 * LOWPASS_HZ * N_FFT / SAMPLE_RATE))
    low = int(LOWPASS_HZ * N_FFT / SAMPLE_RATE) - 2
    est, mix = np.abs(stft(bass)) ** 2, np.abs(stft(clip.mixture)) ** 2
    assert est[:, high:].sum() < 1e-3 * mix[:, high:].sum()
    assert est[:, :low].sum() > 0.9 * mix[:, :low].sum()


def test_two_source_clips_keep_the_classic_irm_and_refuse_stem_references(corpus):
    two = find_clips(corpus, split="all")[0].load()
    ours, theirs = separate_irm(two), classic_irm(two)
    assert all(np.array_equal(ours[k], theirs[k]) for k in theirs)
    with pytest.raises(ValueError, match="hpss-drums estimates drums.*--sources"):
        separate_hpss_drums(two)


def test_evaluate_clip_scores_each_stem_and_the_table_shows_them(clip):
    record = evaluate_clip(clip, ["mix", "irm", "hpss-drums", "lowpass-bass"])
    methods = record["methods"]
    assert all("error" not in m for m in methods.values()), methods
    assert list(record["mixture"]) == list(STEMS)
    assert methods["hpss-drums"]["sources"]["bass"]["skipped"] == NOT_ESTIMATED
    assert methods["lowpass-bass"]["sources"]["bass"]["sdr_v4"] is not None
    irm = methods["irm"]["sources"]
    mix = methods["mix"]["sources"]
    for stem in STEMS:
        if irm[stem]["skipped"] is None:
            assert irm[stem]["sdr"] > mix[stem]["sdr"]
            assert irm[stem]["sdr_v4"] > mix[stem]["sdr_v4"]
    from tinysep.metrics.summary import summarize_methods

    text = format_table(summarize_methods([record], list(methods)), "four stems")
    for stem in STEMS:
        assert f"{stem.capitalize()} (dB)" in text
    assert "SDR v4" in text and "SDR v4 (median over 1 s windows, then over clips)" in text
    # A partial reference has a row in the blocks of the stems it estimates only.
    blocks = {part.split(" (dB)")[0]: part for part in text.split("\n\n") if " (dB)\n" in part}
    assert "hpss-drums" in blocks["Drums"] and "hpss-drums" not in blocks["Bass"]
    assert "lowpass-bass" in blocks["Bass"] and "lowpass-bass" not in blocks["Vocals"]


def test_a_two_source_method_on_four_stems_is_scored_on_the_vocals_it_shares(clip):
    """REPET separates vocals and accompaniment: on a four-stem clip its vocals are scored
    exactly as on their own, the stems it has no estimate for are skipped."""
    from tinysep.methods import resolve_separator

    record = evaluate_clip(clip, ["repet"])
    repet = record["methods"]["repet"]
    assert "error" not in repet, repet
    vocals = resolve_separator("repet")(clip)["vocals"]
    references = {name: clip.source(name) for name in clip.sources}
    alone = score_estimates(references, {"vocals": vocals}, record["mixture"], partial=True,
                            framewise=True)["vocals"]
    assert repet["sources"]["vocals"]["sdr"] == pytest.approx(alone["sdr"], abs=1e-9)
    assert repet["sources"]["vocals"]["sdr_v4"] == pytest.approx(alone["sdr_v4"], abs=1e-9)
    for stem in ("drums", "bass", "other"):
        assert repet["sources"][stem]["skipped"] == NOT_ESTIMATED


def test_eval_command_per_stem(corpus, tmp_path, capsys):
    out = tmp_path / "eval.json"
    code = cli_main(["eval", "--data", str(corpus), "--split", "all", "--sources",
                     "vocals,drums,bass,other", "--method", "irm,lowpass-bass", "--json",
                     str(out), "--jobs", "1", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    report = json.loads(out.read_text())
    assert list(report["summary"]["irm"]["sources"]) == list(STEMS)
    assert report["summary"]["irm"]["sources"]["bass"]["sdr_v4"]["n"] >= 1
    assert "Bass (dB)" in printed and "SDR (mean of whole-clip values)" in printed
    assert cli_main(["eval", "--data", str(corpus), "--sources", "vocals,piano", "--method",
                     "irm", "--json", str(tmp_path / "x.json")]) == 2
    assert "unknown source" in capsys.readouterr().err
