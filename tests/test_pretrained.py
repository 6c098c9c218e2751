"""The shipped `tiny` dual-gate TCN: present, within the MCU budget, loadable, and it
separates audio it has never seen (a freshly synthesized song) far better than the mix."""

from __future__ import annotations

import numpy as np
import pytest

from tinysep.data.clip import SOURCES
from tinysep.data.loaders import load_split
from tinysep.data.synth import write_corpus
from tinysep.evaluate import resolve_separator
from tinysep.metrics import score_estimates, score_mixture
from tinysep.models import count_params, load_model, macs_per_hop, separate
from tinysep.pretrained import default_model_path, model_path, training_record

MCU_PARAMS, MCU_MACS = 256_000, 1_000_000
QUIET_NSDR_DB, QUIET_DROP_DB = 8.0, 1.0


def test_default_model_is_the_tiny_dualgate_tcn_within_budget():
    folder = default_model_path()
    assert folder.name == "dualgate-tcn-tiny"
    size = sum(p.stat().st_size for p in folder.iterdir())
    assert size < 2_000_000
    model = load_model(folder)
    assert model.tinysep_config["name"] == "dualgate-tcn"
    assert model.tinysep_config["preset"] == "tiny"
    assert count_params(model) <= MCU_PARAMS and macs_per_hop(model) <= MCU_MACS
    with pytest.raises(FileNotFoundError, match="no shipped model 'nope'"):
        model_path("nope")


def _trained_runs(record: dict) -> list[dict]:
    """The training runs under a record: itself, the model it was trained aware of int8 from,
    or every run a soup kept, soups in it opened."""
    if "qat_from" in record:
        assert record["command"].startswith("tinysep quantize ")
        assert record["qat"]["steps"] >= 1
        return _trained_runs(record["qat_from"])
    if "soup" not in record:
        return [record]
    assert record["command"].startswith("tinysep soup ")
    kept = record["soup"]["kept"]
    used = [i for i in record["soup"]["ingredients"] if i["folder"] in kept]
    assert len(used) == len(kept) >= 1  # a greedy soup may keep its best run alone
    return [run for ingredient in used for run in _trained_runs(ingredient)]


def test_training_record_shows_the_margin_over_the_baselines():
    """The record names the engines the model trained on, reports engines it never heard
    apart, and the model is ahead of every classic method on each engine's clips."""
    record = training_record()
    # a trained model, or a weight soup of trained models (or of soups of them) of one graph
    for run in _trained_runs(record):
        assert run["command"].startswith("tinysep train ")
        # each trained within a two-hour budget; the budget stops between steps, so the last
        # validation may end a few seconds past it
        budget = run["train_config"]["max_minutes"]
        assert budget <= 120.0
        assert run["training"]["minutes"] <= budget + 0.5
    test = record["test"]["sdr_sir_sar_mean_db"]
    classic = {m: v for m, v in record["test"]["baselines_sdr_mean_db"].items()
               if not m.startswith("model:") and m != "irm"}
    assert {"repet", "hpss"} <= set(classic)
    for source in SOURCES:
        best = max(v[source] for v in classic.values())
        assert test[source]["sdr"] >= best + 3.0, (source, test[source]["sdr"], best)
    trained = record["corpora"]["train"]["engines"]
    rows = record["test"]["by_engine"]
    held_out = [row for table in record["test"].get("held_out", []) for row in table["rows"]]
    assert any(r["status"] == "held out" for r in rows + held_out)
    assert all(r["status"] == "held out" for r in held_out)
    for row in rows + held_out:
        assert (row["status"] == "trained") == (row["engine"] in trained.get(row["role"], []))
        for source in SOURCES:
            assert row["sources"][source]["margin"] > 0.0, (row["role"], row["engine"], source)


@pytest.fixture(scope="module")
def unseen_clips(tmp_path_factory):
    """Five freshly synthesized songs (a seed no corpus of the kit uses)."""
    root = tmp_path_factory.mktemp("unseen") / "synth"
    write_corpus(root, songs=5, seconds=8.0, seed=2024, progress=False)
    return load_split(root, split="all", progress=False)


def unseen_nsdr(model, clips, level_db: float = 0.0) -> dict[str, list[float]]:
    """Per source, the NSDR of each clip separated after playing it ``level_db`` dB louder."""
    nsdr = {source: [] for source in SOURCES}
    for clip in (c.at_level(level_db) for c in clips):
        estimates = separate(model, clip.mixture)
        references = {s: clip.source(s) for s in SOURCES}
        scores = score_estimates(references, estimates, score_mixture(references, clip.mixture))
        for source in SOURCES:
            nsdr[source].append(scores[source]["nsdr"])
    return nsdr


@pytest.fixture(scope="module")
def shipped_model():
    return load_model(default_model_path())


@pytest.fixture(scope="module")
def unseen_scores(shipped_model, unseen_clips) -> dict[str, list[float]]:
    """The shipped model's NSDR on the unseen songs at their own level."""
    return unseen_nsdr(shipped_model, unseen_clips)


def test_separates_an_unseen_song(shipped_model, unseen_clips, unseen_scores):
    model, nsdr = shipped_model, unseen_scores
    for source in SOURCES:
        # Songs the model never saw: clearly separated on average, and on every clip.
        assert np.mean(nsdr[source]) > 8.0, (source, nsdr[source])
        assert min(nsdr[source]) > 2.0, (source, nsdr[source])
    clip = unseen_clips[0]
    estimates = separate(model, clip.mixture)
    # `tinysep eval --method model:PATH` takes the same folder.
    via_eval = resolve_separator(f"model:{default_model_path()}")(clip)
    np.testing.assert_allclose(via_eval["vocals"], estimates["vocals"], atol=1e-5)


def test_holds_up_on_a_quiet_recording(shipped_model, unseen_clips, unseen_scores):
    """The same songs 20 dB quieter (a recording mastered low, or a live input with
    headroom): the NSDR stays near its value at the corpus level, as REPET's does."""
    loud, quiet = unseen_scores, unseen_nsdr(shipped_model, unseen_clips, -20.0)
    for source in SOURCES:
        assert np.mean(quiet[source]) > QUIET_NSDR_DB, (source, quiet[source])
        drop = np.mean(loud[source]) - np.mean(quiet[source])
        assert drop < QUIET_DROP_DB, (source, loud[source], quiet[source])
