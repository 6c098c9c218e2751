"""`tinysep bench`: the section list, the evaluation-speed measurement, table and JSON."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from cli import bench
from cli.main import main
from tinysep.data.clip import Clip
from tinysep.evaluate import measure_speed


def short_clip(seconds: float = 1.0) -> Clip:
    rng = np.random.default_rng(0)
    n = int(seconds * 16000)
    voc = (0.1 * rng.standard_normal(n)).astype(np.float32)
    acc = (0.1 * rng.standard_normal(n)).astype(np.float32)
    return Clip("noise", voc + acc, voc, acc)


def test_measure_speed_reports_a_rate_per_method_and_for_the_metrics():
    # measured in a spawned single-threaded worker, like an evaluation worker
    result = measure_speed([short_clip(), short_clip()], ["mix", "irm"], repeats=2)
    assert result["audio_seconds"] == pytest.approx(2.0)
    assert [row["method"] for row in result["rows"]] == ["mix", "irm", "metrics"]
    for row in result["rows"]:
        assert np.isfinite(row["total_x"]) and row["total_x"] > 0
        # throughput of the whole can't beat the throughput of its scoring part
        assert row["total_x"] <= row["score_x"] * (1 + 1e-9)
        assert row["total_seconds_median"] == pytest.approx(2.0 / row["total_x"])
    assert result["rows"][-1]["separate_x"] is None
    with pytest.raises(ValueError, match="repeats"):
        measure_speed([short_clip()], ["mix"], repeats=0)


def test_format_section_aligns_columns_and_marks_missing_values():
    text = bench.format_section({
        "title": "T",
        "columns": [["method", "method"], ["x", "speed"]],
        "rows": [{"method": "a-long-name", "x": 12.345}, {"method": "b", "x": None}],
    })
    lines = text.splitlines()
    assert lines[0] == "T"
    assert lines[3].split() == ["a-long-name", "12.35"] and lines[4].split() == ["b", "-"]
    assert len({len(line) for line in lines[1:]}) == 1  # header, rule and rows aligned


def test_sections_are_named_and_importable():
    names = [name for name, _ in bench.sections()]
    assert names[0] == "eval_speed" and len(set(names)) == len(names)
    for _, section in bench.sections():
        assert callable(section)


@pytest.mark.slow  # minutes on 2 cores: `make test-slow` (CI runs it)
def test_cli_quick_bench_prints_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Evaluation speed" in printed and "repet-mfcc" in printed
    report = json.loads(out.read_text())
    rows = report["sections"]["eval_speed"]["rows"]
    assert {row["method"] for row in rows} == {"mix", "hpss", "repet", "repet-sim",
                                               "repet-mfcc", "irm", "metrics"}
    # the oracle mask is an STFT, a division and an inverse STFT: faster than REPET-SIM
    speed = {row["method"]: row["separate_x"] for row in rows}
    assert speed["irm"] > speed["repet-sim"]


def test_cli_rejects_an_unknown_section(capsys):
    assert main(["bench", "--section", "nope"]) == 2
    assert "unknown bench section nope" in capsys.readouterr().err


def test_time_batches_times_each_batch_training_would_make():
    from tinysep.training.data import time_batches

    clips = [short_clip(2.0), short_clip(3.0)]
    seconds = time_batches(clips, {"speed_probability": 1.0}, batch_size=2, samples=8000,
                           count=3)
    assert len(seconds) == 3 and all(np.isfinite(s) and s > 0 for s in seconds)
    with pytest.raises(ValueError, match="speed_probability"):
        time_batches(clips, {"speed_probability": 2.0}, batch_size=2, samples=8000, count=1)


def quick_section_on_the_shipped_settings(section) -> tuple[dict, dict]:
    """A training section's quick result and the shipped training settings, having checked
    that the section's batches are the shipped model's size."""
    from tinysep.pretrained import training_settings

    result = section(quick=True)
    stored = training_settings()
    assert (result["batch_size"], result["chunk_seconds"]) == (stored["batch_size"],
                                                               stored["chunk_seconds"])
    return result, stored


def test_train_data_section_rates_follow_from_the_shipped_settings():
    result, stored = quick_section_on_the_shipped_settings(bench.train_data_section)
    names = [row["augmentation"] for row in result["rows"]]
    assert names[-1] == "the shipped model's" and len(names) == 4
    for row in result["rows"]:
        assert 0 < row["batch_ms_median"] <= row["batch_ms_p90"]
        assert row["audio_x"] == pytest.approx(
            stored["batch_size"] * stored["chunk_seconds"] / (row["batch_ms_median"] / 1000))
    assert "ms per batch" in bench.format_section(result)


def test_train_step_section_times_each_feeding_of_the_shipped_graph():
    result, _ = quick_section_on_the_shipped_settings(bench.train_step_section)
    feeds = [row["feeding"] for row in result["rows"]]
    assert feeds == ["one batch held in memory", "a worker thread (training)",
                     "a tf.data generator dataset"]
    for row in result["rows"]:
        assert 0 < row["step_ms_median"] <= row["step_ms_p90"]
        assert row["vs_alone"] == pytest.approx(row["step_ms_median"]
                                                / result["rows"][0]["step_ms_median"])
    assert result["rows"][0]["vs_alone"] == 1.0
    assert "x the step alone" in bench.format_section(result)
    assert not [t for t in threading.enumerate() if t.name == "batch-prefetch" and t.is_alive()]


def test_train_sections_draw_from_a_corpus_given_on_the_command_line(tmp_path, capsys):
    from tinysep.data.synth import write_corpus

    corpus = tmp_path / "songs"
    write_corpus(corpus, songs=6, seconds=5.0, seed=3, progress=False)
    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--section", "train_data", "--train-data", str(corpus),
                 "--json", str(out)]) == 0
    title = json.loads(out.read_text())["sections"]["train_data"]["title"]
    train_clips = len(json.loads((corpus / "splits.json").read_text())["splits"]["train"])
    assert f"from the {train_clips} train clips of {corpus}," in title
    assert "synthetic songs" not in capsys.readouterr().out


def test_a_train_data_folder_that_is_no_corpus_is_refused_by_name(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["bench", "--section", "train_step", "--train-data", str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinysep bench: error: ") and str(empty) in err


def test_train_data_without_a_training_section_is_refused(tmp_path, capsys):
    assert main(["bench", "--section", "eval_speed", "--train-data", str(tmp_path)]) == 2
    assert "--train-data feeds only the sections train_data, train_step" in capsys.readouterr().err
