"""`tinysep ablate`: every unet-se-sru variant trains with the same recipe, the table and
JSON report what was measured, and an interrupted ablation reuses finished runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tinysep.ablate import VARIANTS, format_markdown, run_ablation, select_variants
from tinysep.data.synth import write_corpus
from tinysep.models import load_model
from tinysep.train import TrainConfig

SMALL = {"channels": [4, 8], "units": 6}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ablate") / "synth"
    write_corpus(root, songs=6, seconds=6.0, seed=4, progress=False)
    return root


@pytest.mark.slow  # minutes on 2 cores: `make test-slow` (CI runs it)
def test_ablation_trains_variants_and_reports(corpus, tmp_path):
    base = TrainConfig(model="unet-se-sru", options=dict(SMALL), data=str(corpus), epochs=1,
                       steps_per_epoch=2, batch_size=2, chunk_seconds=0.5, valid_clips=1,
                       valid_seconds=2.0, patience=0)
    variants = select_variants(["unet-se-sru", "lstm", "no-norm"])
    result = run_ablation(base, tmp_path / "abl", variants, max_clips=1, progress=False,
                          in_process=True)
    rows = {r["variant"]: r for r in result["variants"]}
    assert list(rows) == ["unet-se-sru", "lstm", "no-norm"]
    for name, row in rows.items():
        model = load_model(row["run"])
        expected = {**SMALL, **next(v.options for v in VARIANTS if v.name == name)}
        assert model.tinysep_config["options"] == expected
        assert row["steps"] == 2 and row["seconds_per_epoch"] > 0
        assert row["test"]["mean"]["sdr"] is not None
    # LSTM has recurrent weights the SRU does not: more parameters, same recipe.
    assert rows["lstm"]["parameters"] > rows["unet-se-sru"]["parameters"]
    assert result["eval"]["clips"] == 1
    saved = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert saved["variants"][1]["test"] == rows["lstm"]["test"]
    table = (tmp_path / "abl" / "ablation.md").read_text()
    assert table == format_markdown(saved)
    assert "| difference | - | replace SRU with LSTM | remove GN |" in table
    # Run again: finished runs are reused, not retrained.
    mtime = (tmp_path / "abl" / "lstm" / "model.weights.h5").stat().st_mtime_ns
    again = run_ablation(base, tmp_path / "abl", select_variants(["lstm"]), max_clips=1,
                         progress=False, in_process=True)
    assert again["variants"][0]["steps"] == 2
    assert (tmp_path / "abl" / "lstm" / "model.weights.h5").stat().st_mtime_ns == mtime


def test_unknown_variant_and_model_are_rejected(corpus, tmp_path):
    with pytest.raises(ValueError, match="unknown ablation variant"):
        select_variants(["se-off"])
    with pytest.raises(ValueError, match="belong to 'unet-se-sru'"):
        run_ablation(TrainConfig(data=str(corpus)), tmp_path, list(VARIANTS), progress=False)


@pytest.mark.parametrize("args, message", [
    (["--split", "bogus"], "unknown split 'bogus'"),
    (["--max-clips", "0"], "max_clips must be at least 1, got 0"),
    (["--jobs", "0"], "jobs must be at least 1, got 0"),
    (["--preset", "bogus"], "no preset 'bogus'"),
    (["--option", "units=0"], "units must be a whole number"),
])
def test_bad_ablation_settings_are_refused_before_any_variant_trains(corpus, tmp_path, capsys,
                                                                     args, message):
    from cli.main import main

    out = tmp_path / "abl"
    assert main(["ablate", "--data", str(corpus), "--out", str(out), "--epochs", "1",
                 "--steps-per-epoch", "1", "--no-progress", *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
