"""`tinysep sweep`: the grid, the per-cell measurements, the tables, and resuming."""

from __future__ import annotations

import csv
import json

import pytest
from convert_helpers import corpus, fitted_model_folder

from cli.main import main
from convert.sweep import make_plan, run_sweep, write_tables


def test_plan_expands_the_grid():
    plan = make_plan([0, 0.5], ["int8", "float16"], [64, 256], [{"hidden": 24}])
    ids = [c["id"] for c in plan.cells]
    assert ids == ["base-int8-cal64", "base-int8-cal256", "base-float16",
                   "s0.5-int8-cal64", "s0.5-int8-cal256", "s0.5-float16",
                   "w-hidden24-int8-cal64", "w-hidden24-int8-cal256", "w-hidden24-float16"]
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\)"):
        make_plan([1.0], ["int8"], [64])
    with pytest.raises(ValueError, match="unknown quantization"):
        make_plan([0], ["int4"], [64])


@pytest.mark.slow  # minutes on 2 cores: `make test-slow` (CI runs it)
def test_sweep_measures_cells_and_resumes(tmp_path):
    out = tmp_path / "sweep"
    model = fitted_model_folder("dualgate-tcn")
    small = make_plan([0], ["int8"], [64], [{"hidden": 24}], prune_steps=8, eval_clips=1)
    cells = run_sweep(model, corpus(), out, small, max_clips=3, progress=False)
    assert [c["id"] for c in cells] == ["base-int8-cal64", "w-hidden24-int8-cal64"]
    base, narrow = cells
    for cell in cells:
        assert cell["bytes"] > cell["weight_bytes"] > 0 and cell["host_us_per_hop"] > 0
        for source in ("vocals", "accompaniment"):
            s = cell["sources"][source]
            assert s["drop_db"] == pytest.approx(s["sdr_reference"] - s["sdr"])
            assert abs(s["drop_db"]) < 3.0
    assert narrow["macs_per_hop"] < base["macs_per_hop"]
    assert narrow["weight_bytes"] < base["weight_bytes"]
    assert base["micro_bytes"] <= base["bytes"]  # per-tensor by default: little to compact
    assert narrow["arena_tflm"] < base["arena_tflm"]  # measured by TFLite Micro
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}
    variant_stamp = (out / "models" / "w-hidden24" / "done.json").stat().st_mtime_ns
    # A leftover half-written variant folder is not mistaken for a finished one.
    (out / "models" / "w-hidden24.partial-1").mkdir()

    bigger = make_plan([0], ["int8", "float32"], [64], [{"hidden": 24}], prune_steps=8,
                       eval_clips=1)
    # tables written while cells of the plan are missing say so (a stopped sweep's)
    write_tables(out, bigger)
    report = json.loads((out / "results.json").read_text())
    assert (report["cells_planned"], report["cells_finished"], report["complete"]) == (4, 2, False)
    assert "Partial: 2 of 4 cells finished" in (out / "results.md").read_text()
    cells = run_sweep(model, corpus(), out, bigger, max_clips=3, progress=False)
    assert [c["id"] for c in cells] == ["base-int8-cal64", "base-float32",
                                        "w-hidden24-int8-cal64", "w-hidden24-float32"]
    for name, stamp in stamps.items():  # finished cells were not redone
        assert (out / "cells" / name).stat().st_mtime_ns == stamp
    assert (out / "models" / "w-hidden24" / "done.json").stat().st_mtime_ns == variant_stamp
    float32 = next(c for c in cells if c["id"] == "w-hidden24-float32")
    assert abs(float32["sources"]["vocals"]["drop_db"]) < 0.01
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["id"] for r in rows] == [c["id"] for c in cells]
    by_id = {r["id"]: r for r in rows}
    base_float = float(by_id["base-int8-cal64"]["vocals_sdr_float"])
    for r in rows:  # total cost = quantized SDR - the unpruned float SDR
        assert float(r["vocals_vs_base_db"]) == pytest.approx(
            float(r["vocals_sdr_quant"]) - base_float, abs=1e-9)
    assert "| w-hidden24-float32 |" in (out / "results.md").read_text()
    assert len(json.loads((out / "results.json").read_text())["rows"]) == 4
    assert json.loads((out / "results.json").read_text())["complete"] is True
    assert "Partial" not in (out / "results.md").read_text()
    assert (out / "results.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="holds a sweep with prune_steps=8"):
        run_sweep(model, corpus(), out, make_plan([0], ["int8"], [64], prune_steps=9,
                                                  eval_clips=1), progress=False)
    assert not (out / "cells" / "base-int8-cal64.json.tmp").exists()


def test_cli_sweep_prints_the_table(tmp_path, capsys):
    out = tmp_path / "cli-sweep"
    args = ["sweep", str(fitted_model_folder("dualgate-tcn")), "--data", str(corpus()),
            "--out", str(out), "--quant", "dynamic", "--eval-clips", "1", "--max-clips", "2",
            "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| base-dynamic |" in printed and "1/1 cells" in printed
    assert main([*args[:-1], "--sparsity", "2"]) == 2
    assert "[0, 1)" in capsys.readouterr().err
