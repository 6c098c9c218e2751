"""`tinysep bench` sections of the shipped model: host latency float32 vs int8, and the
default export's size against the MCU budgets (real exports, real LiteRT interpreter)."""

from __future__ import annotations

import argparse
import inspect
import json
import math
import re

import numpy as np
import pytest

from cli.bench import format_section
from convert import bench
from convert.runtime import BundleRunner
from tinysep.data.synth import synthetic_clips
from tinysep.dsp import magnitude, stft


@pytest.fixture(scope="module")
def latency() -> dict:
    return bench.model_latency_section(quick=True)


def test_latency_rows_are_consistent_medians_and_percentiles(latency):
    rows = {row["quant"]: row for row in latency["rows"]}
    assert sorted(rows) == ["float32", "int8"]
    for quant, row in rows.items():
        k = row["frames_per_invoke"]
        assert k == 1 and row["invokes"] == 40 * bench.BLOCK_INVOKES
        median, p99 = row["invoke_us_median"], row["invoke_us_p99"]
        assert math.isfinite(median) and 0 < median <= p99 and math.isfinite(p99)
        assert row["hop_us_median"] == pytest.approx(median / k)
        assert row["hop_us_p99"] == pytest.approx(p99 / k)
        assert row["realtime_factor"] == pytest.approx(8000.0 / row["hop_us_median"])
        # the timed invoke is one part of the Python step, sample by sample
        assert row["step_us_per_hop_median"] >= row["hop_us_median"]
        folder, _ = bench.exported_bundle(quant, k)
        assert row["model_bytes"] == (folder / "model.tflite").stat().st_size
        assert row["model_kib"] == row["model_bytes"] / 1024
    headers = [header for _, header in latency["columns"]]
    assert "model KiB" in headers and not [h for h in headers if "bytes" in h]
    assert rows["int8"]["model_bytes"] < rows["float32"]["model_bytes"] / 2
    ratio = rows["float32"]["invoke_us_median"] / rows["int8"]["invoke_us_median"]
    assert rows["int8"]["int8_speedup"] == pytest.approx(ratio)
    assert latency["int8_speedup_by_k"] == {"1": pytest.approx(ratio)}
    assert rows["float32"]["int8_speedup"] is None
    met = rows["int8"]["hop_us_median"] < 80.0
    assert latency["meets_target"] is met
    assert "80 us" in latency["note"] and ("NOT met" in latency["note"]) is not met
    json.dumps(latency, allow_nan=False)  # the bench JSON report takes it as it is


def test_timed_interpreter_times_the_invoke_and_leaves_the_stream_unchanged():
    folder, _ = bench.exported_bundle("int8", 1)
    clip = synthetic_clips(1, 0.5, seed=3)[0]
    plain, timed = BundleRunner(folder), BundleRunner(folder)
    timer = bench.TimedInterpreter(timed.interpreter)
    timed.interpreter = timer
    features = plain.features(magnitude(stft(clip.mixture, framing=plain.bundle.framing.name)))
    expected = plain.run(features)
    got = timed.run(features)
    np.testing.assert_array_equal(got, expected)
    assert np.abs(expected).max() > 0 and timer.last_ns > 0


def test_size_section_reports_the_files_and_the_model_of_the_default_export():
    from tinysep.models import count_params, load_model, macs_per_hop, make_streaming_model
    from tinysep.pretrained import default_model_path

    result = bench.model_size_section(quick=True)
    rows = {row["key"]: row for row in result["rows"]}
    folder, summary = bench.exported_bundle("int8", 1)
    assert summary["quantization"] == "int8" and summary["frames_per_invoke"] == 1
    assert rows["model_bytes"]["value"] == (folder / "model.tflite").stat().st_size
    source = (folder / "model_data.cc").read_text()
    array_bytes = len(re.findall(r"0x[0-9a-f]{2}", source))
    assert f"_data_len = {array_bytes};" in source
    assert rows["c_array_bytes"]["value"] == array_bytes
    manifest = json.loads((folder / "manifest.json").read_text())
    assert rows["arena_bytes_estimate"]["value"] == manifest["arena_bytes_estimate"]
    model = load_model(default_model_path())
    assert rows["params"]["value"] == count_params(model)
    assert rows["macs_per_hop"]["value"] == macs_per_hop(make_streaming_model(model, 1))
    assert rows["arena_bytes_tflm"]["value"] == summary.get("arena_bytes_tflm")
    budgets = {"macs_per_hop": 1_000_000, "model_bytes": 262144, "c_array_bytes": 262144,
               "arena_bytes_estimate": 65536, "arena_bytes_tflm": 65536}
    for key, row in rows.items():
        assert row["budget"] == budgets.get(key)
        if row["value"] is None or row["budget"] is None:
            assert row["fits"] is None
        else:
            assert row["fits"] == ("ok" if row["value"] <= row["budget"] else "OVER")
        assert result[key] == row["value"]
    # the table shows sizes in KiB, counts as counts; the rows keep the exact numbers
    assert rows["model_bytes"]["value_shown"] == f"{rows['model_bytes']['value'] / 1024:,.1f} KiB"
    assert rows["model_bytes"]["budget_shown"] == "256.0 KiB"
    assert rows["macs_per_hop"]["value_shown"] == f"{rows['macs_per_hop']['value']:,}"
    table = format_section(result)
    assert "KiB" in table and "bytes" not in table.split("\n", 3)[3].split("budgets:")[0]
    over = [row["quantity"] for row in rows.values() if row["fits"] == "OVER"]
    assert result["within_budgets"] is (not over)
    assert all(name in result["note"] for name in over)


def test_the_bench_export_is_the_default_of_tinysep_export():
    # the size section calls export_bundle with its defaults: they must be the CLI's
    from cli import export as export_command
    from convert.export import export_bundle

    parser = argparse.ArgumentParser()
    export_command.add_arguments(parser)
    cli = parser.parse_args(["MODEL", "--out", "BUNDLE"])
    defaults = {name: p.default for name, p in
                inspect.signature(export_bundle).parameters.items()}
    assert defaults["quant"] == cli.quant
    assert defaults["frames_per_invoke"] == cli.frames_per_invoke
    assert defaults["calibration_frames"] == cli.calibration_frames
    assert defaults["calibration_split"] == cli.calibration_split
    assert defaults["per_channel"] is cli.per_channel
    assert defaults["keep_tensor_names"] is cli.keep_tensor_names
    assert defaults["edgetpu_compile"] is not cli.no_edgetpu_compiler
    assert defaults["symbol"] == cli.symbol and defaults["seed"] == cli.seed
    assert list(defaults["keep_float"]) == [n for n in cli.keep_float.split(",") if n]
    if "micro_compact" in defaults:
        assert defaults["micro_compact"] is cli.micro_compact
