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


def test_training_record_shows_the_margin_over_the_baselines():
    """The record names the engines the model trained on, reports engines it never heard
    apart, and the model is ahead of every classic method on each engine's clips."""
    record = training_record()
    assert record["command"].startswith("tinysep train ")
    assert record["training"]["minutes"] <= 120.0
    test = record["test"]["sdr_sir_sar_mean_db"]
    classic = {m: v for m, v in record["test"]["baselines_sdr_mean_db"].items()
               if not m.startswith("model:") and m != "irm"}
    assert {"repet", "hpss"} <= set(classic)
    for source in SOURCES:
        best = max(v[source] for v in classic.values())
        assert test[source]["sdr"] >= best + 3.0, (source, test[source]["sdr"], best)
    trained = record["corpora"]["train"]["engines"]
    rows = record["test"]["by_engine"]
    assert any(r["status"] == "held out" for r in rows)
    for row in rows:
        assert (row["status"] == "trained") == (row["engine"] in trained.get(row["role"], []))
        for source in SOURCES:
            assert row["sources"][source]["margin"] > 0.0, (row["role"], row["engine"], source)


def test_separates_an_unseen_song(tmp_path):
    root = tmp_path / "synth"
    write_corpus(root, songs=5, seconds=8.0, seed=2024, progress=False)
    clips = load_split(root, split="all", progress=False)
    model = load_model(default_model_path())
    nsdr = {source: [] for source in SOURCES}
    for clip in clips:
        estimates = separate(model, clip.mixture)
        references = {s: clip.source(s) for s in SOURCES}
        scores = score_estimates(references, estimates, score_mixture(references, clip.mixture))
        for source in SOURCES:
            nsdr[source].append(scores[source]["nsdr"])
    for source in SOURCES:
        # Songs the model never saw: clearly separated on average, and on every clip.
        assert np.mean(nsdr[source]) > 8.0, (source, nsdr[source])
        assert min(nsdr[source]) > 2.0, (source, nsdr[source])
    clip = clips[0]
    estimates = separate(model, clip.mixture)
    # `tinysep eval --method model:PATH` takes the same folder.
    via_eval = resolve_separator(f"model:{default_model_path()}")(clip)
    np.testing.assert_allclose(via_eval["vocals"], estimates["vocals"], atol=1e-5)
