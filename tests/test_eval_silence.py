"""`tinysep eval --silence SOURCE`: each mixture without one source (a band alone), and the
estimate of that source scored as leak, its power against the sounding sources' in dB."""

from __future__ import annotations

import json

import numpy as np
import pytest
from eval_helpers import save_tiny_model, write_engine_corpus

from cli.main import main
from tinysep.data.clip import Clip
from tinysep.eval_inputs import InputClip
from tinysep.metrics import METRIC_LIMIT_DB, SILENT_REFERENCE, score_estimates, summarize


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_engine_corpus(tmp_path_factory.mktemp("silence") / "corpus", songs=3, seed=5)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("silence") / "model", seed=7)


def _clip(stems: bool = False) -> Clip:
    rng = np.random.default_rng(0)
    vocals, drums, bass, other = (rng.normal(0, s, 4000).astype(np.float32)
                                  for s in (0.1, 0.2, 0.05, 0.3))
    accompaniment = drums + bass + other
    return Clip("c", vocals + accompaniment, vocals, accompaniment,
                stems={"drums": drums, "bass": bass, "other": other} if stems else {},
                sources=("vocals", "drums", "bass", "other") if stems else
                ("vocals", "accompaniment"))


def test_a_clip_without_a_source_mixes_only_the_others():
    clip = _clip()
    band = clip.without("vocals")
    assert not band.vocals.any()
    np.testing.assert_allclose(band.mixture, clip.accompaniment, atol=1e-7)
    np.testing.assert_array_equal(band.accompaniment, clip.accompaniment)
    voice = clip.without("accompaniment")
    np.testing.assert_allclose(voice.mixture, clip.vocals, atol=1e-7)
    assert not voice.accompaniment.any()
    stems = _clip(stems=True)
    no_drums = stems.without("drums")
    assert not no_drums.stems["drums"].any()
    np.testing.assert_allclose(no_drums.mixture, stems.vocals + stems.stems["bass"]
                               + stems.stems["other"], atol=1e-6)
    np.testing.assert_allclose(no_drums.accompaniment, stems.stems["bass"]
                               + stems.stems["other"], atol=1e-6)
    with pytest.raises(ValueError, match="it has no source 'drums' to silence"):
        clip.without("drums")


def test_leak_is_the_estimate_of_a_silent_source_against_the_sounding_ones():
    rng = np.random.default_rng(1)
    band = rng.normal(0, 0.3, 8000)
    references = {"vocals": np.zeros(8000), "accompaniment": band}
    for gain_db in (-6.0, -20.0):
        leak = band * 10 ** (gain_db / 20)
        scores = score_estimates(references, {"vocals": leak, "accompaniment": band - leak})
        assert scores["vocals"]["skipped"] == SILENT_REFERENCE
        assert scores["vocals"]["leak"] == pytest.approx(gain_db, abs=1e-9)
        assert scores["vocals"]["sdr"] is None and scores["accompaniment"]["leak"] is None
    quiet = score_estimates(references, {"vocals": np.zeros(8000), "accompaniment": band})
    assert quiet["vocals"]["leak"] == -METRIC_LIMIT_DB
    # both sources sounding: no leak is measured; the summary averages leaks apart
    both = score_estimates({"vocals": band[::-1].copy(), "accompaniment": band},
                           {"vocals": band[::-1] * 0.9, "accompaniment": band * 0.9})
    assert both["vocals"]["leak"] is None and both["vocals"]["sdr"] is not None
    summary = summarize([{"samples": 8000, "sources": quiet}, {"samples": 8000, "sources": both}])
    assert summary["sources"]["vocals"]["leak"] == {"mean": -METRIC_LIMIT_DB,
                                                    "median": -METRIC_LIMIT_DB, "n": 1}


def test_eval_silence_scores_the_leak_of_every_method(corpus, tmp_path, capsys):
    out = tmp_path / "band.json"
    args = ["eval", "--method", "mix,irm,hpss", "--data", str(corpus), "--split", "all",
            "--jobs", "1", "--no-progress", "--by-engine"]
    assert main([*args, "--json", str(out), "--silence", "vocals"]) == 0
    printed = capsys.readouterr().out
    assert "vocals left out" in printed and "Leak mean" in printed
    assert "model leak v / a" in printed  # the per-engine table has the leak columns
    report = json.loads(out.read_text())
    assert report["silence"] == "vocals" and report["clips_done"] == 3
    leaks = {m: report["summary"][m]["sources"]["vocals"]["leak"] for m in ("mix", "irm", "hpss")}
    # the mixture given as the vocals is the whole band: leak 0 dB; the oracle mask none
    assert leaks["mix"]["mean"] == pytest.approx(0.0, abs=1e-3) and leaks["mix"]["n"] == 3
    assert leaks["irm"]["mean"] == -METRIC_LIMIT_DB
    assert -40.0 < leaks["hpss"]["mean"] < 0.0
    for clip in report["clips"]:
        assert clip["methods"]["hpss"]["sources"]["vocals"]["skipped"] == SILENT_REFERENCE
        assert clip["methods"]["mix"]["sources"]["accompaniment"]["sdr"] == pytest.approx(
            METRIC_LIMIT_DB, abs=1e-3)  # the band alone is its own perfect estimate
        # ... so there is nothing to improve on: no NSDR, for any method
        assert clip["methods"]["hpss"]["sources"]["accompaniment"]["nsdr"] is None
    rows = report["by_engine"]["rows"]
    assert rows and all(row["sources"]["vocals"]["least_classic_leak"] == "hpss" for row in rows)
    assert out.with_name("band-engines.png").read_bytes()[:4] == b"\x89PNG"


def test_silence_is_checked_and_not_mixed_with_whole_mixtures(corpus, tmp_path, capsys):
    base = ["eval", "--method", "mix", "--data", str(corpus), "--split", "all", "--jobs", "1",
            "--no-progress"]
    assert main([*base, "--json", str(tmp_path / "x.json"), "--silence", "drums"]) == 2
    err = capsys.readouterr().err
    assert "--silence 'drums': expected one of the scored sources (vocals, accompaniment)" in err
    assert not (tmp_path / "x.json").exists()
    whole = tmp_path / "whole.json"
    assert main([*base, "--json", str(whole)]) == 0
    assert main([*base, "--json", str(tmp_path / "y.json"), "--silence", "vocals",
                 "--reuse", str(whole)]) == 2
    err = capsys.readouterr().err
    assert "it separated the whole mixtures, this run separates the mixtures less 'vocals'" in err
    assert not (tmp_path / "y.json").exists()


def test_silence_needs_the_sources_apart(tmp_path, capsys):
    from tinysep.data.audio_io import write_audio

    song = tmp_path / "song.wav"
    write_audio(song, np.random.default_rng(2).normal(0, 0.1, 16000).astype(np.float32), 16000)
    argv = ["eval", "--method", "mix", "--data", str(song), "--json", str(tmp_path / "s.json"),
            "--silence", "vocals", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"--silence vocals: {song} has no reference files beside it" in err
    assert not (tmp_path / "s.json").exists()
    bare = _clip()
    clip = InputClip(bare.name, bare.mixture, bare.vocals, bare.accompaniment,
                     has_references=False)
    with pytest.raises(ValueError, match="clip c has no references"):
        clip.without("vocals")


def test_the_per_engine_rows_carry_the_models_leak(corpus, model, tmp_path, capsys):
    out = tmp_path / "model.json"
    assert main(["eval", "--method", f"model:{model},repet,hpss", "--data", str(corpus),
                 "--split", "all", "--jobs", "1", "--no-progress", "--by-engine",
                 "--json", str(out), "--silence", "vocals"]) == 0
    capsys.readouterr()
    report = json.loads(out.read_text())
    method = f"model:{model}"
    leaks = [c["methods"][method]["sources"]["vocals"]["leak"] for c in report["clips"]]
    assert all(-100.0 < leak < 20.0 for leak in leaks)  # an untrained mask passes some band
    overall = next(r for r in report["by_engine"]["rows"]
                   if r["role"] == "vocals" and r["clips"] == len(leaks))
    assert overall["sources"]["vocals"]["model_leak"] == pytest.approx(np.mean(leaks))
    assert overall["sources"]["vocals"]["model"] is None  # no SDR for a source left out
    classic = {m: np.mean([c["methods"][m]["sources"]["vocals"]["leak"] for c in report["clips"]])
               for m in ("repet", "hpss")}
    least = min(classic, key=classic.get)
    assert overall["sources"]["vocals"]["least_classic_leak"] == least
    assert overall["sources"]["vocals"]["least_classic_leak_db"] == pytest.approx(classic[least])
