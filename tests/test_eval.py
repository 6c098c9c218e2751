"""Evaluation: records and summaries, parallel workers, failures, interruption, `tinysep eval`."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass

import pytest

from cli.main import main
from tinysep import evaluate as evaluation
from tinysep import methods
from tinysep.data.clip import Clip
from tinysep.data.loaders import find_clips
from tinysep.data.synth import write_corpus
from tinysep.metrics import score_estimates, score_mixture


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Three 4-second synthetic songs in MIR-1K layout (one clip each)."""
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(root, songs=3, seconds=4.0, seed=3, progress=False)
    return root


@pytest.fixture(scope="module")
def sources(corpus):
    found = find_clips(corpus, dataset="synth", split="all")
    assert len(found) == 3
    return found


@dataclass(frozen=True)
class InterruptingSource:
    """A clip source whose loading is cut short by Ctrl-C."""

    name: str = "interrupted"

    def load(self) -> Clip:
        raise KeyboardInterrupt


@dataclass(frozen=True)
class ThreadProbeSource:
    """Loads a real clip but renames it after the worker's BLAS thread setting."""

    inner: object
    name: str = "probe"

    def load(self) -> Clip:
        clip = self.inner.load()
        clip.name = f"threads={os.environ.get('OPENBLAS_NUM_THREADS')},pid={os.getpid()}"
        return clip


def test_in_process_run_scores_every_clip_and_summarises(sources, tmp_path):
    out = tmp_path / "eval.json"
    report = evaluation.evaluate(sources[:2], ["mix", "irm"], in_process=True, json_path=out,
                                 progress=False, meta={"data": "corpus"})
    assert report["status"] == "complete" and report["clips_done"] == 2
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert report["data"] == "corpus" and report["methods"] == ["mix", "irm"]

    # the per-clip values are the metrics of the loaded clip, nothing else
    clip = sources[1].load()
    refs = {"vocals": clip.vocals, "accompaniment": clip.accompaniment}
    from tinysep.baselines import get_method

    direct = score_estimates(refs, get_method("irm")(clip), score_mixture(refs, clip.mixture))
    record = report["clips"][1]
    assert record["name"] == clip.name and record["samples"] == len(clip.mixture)
    assert record["methods"]["irm"]["sources"]["vocals"]["sdr"] == pytest.approx(
        direct["vocals"]["sdr"], abs=1e-9)

    mix, irm = report["summary"]["mix"]["sources"], report["summary"]["irm"]["sources"]
    for source in ("vocals", "accompaniment"):
        assert mix[source]["nsdr"]["mean"] == 0.0 and mix[source]["gnsdr"] == 0.0
        assert irm[source]["sdr"]["mean"] > mix[source]["sdr"]["mean"] + 5.0
        assert irm[source]["sdr"]["n"] == 2
    timing = report["timing"]
    assert timing["audio_seconds"] == pytest.approx(sum(r["seconds"] for r in report["clips"]))
    assert timing["clip_seconds_per_wall_second"] > 0


def test_parallel_workers_give_the_same_numbers(sources):
    serial = evaluation.evaluate(sources, ["mix", "repet"], in_process=True, progress=False)
    parallel = evaluation.evaluate(sources, ["mix", "repet"], jobs=2, progress=False)
    assert parallel["jobs"] == 2 and parallel["clips_done"] == 3
    for a, b in zip(serial["clips"], parallel["clips"], strict=True):
        assert a["name"] == b["name"]
        for source in ("vocals", "accompaniment"):
            sa = a["methods"]["repet"]["sources"][source]
            sb = b["methods"]["repet"]["sources"][source]
            assert sb["sdr"] == pytest.approx(sa["sdr"], abs=1e-6)
            assert sb["nsdr"] == pytest.approx(sa["nsdr"], abs=1e-6)


def test_workers_are_separate_single_threaded_processes(sources):
    before = os.environ.get("OPENBLAS_NUM_THREADS")
    report = evaluation.evaluate([ThreadProbeSource(s) for s in sources], ["mix"], jobs=2,
                                 progress=False)
    names = [clip["name"] for clip in report["clips"]]
    assert all(name.startswith("threads=1,") for name in names)
    assert all(not name.endswith(f"pid={os.getpid()}") for name in names)
    assert os.environ.get("OPENBLAS_NUM_THREADS") == before  # the parent's setting is restored


def test_a_broken_clip_is_reported_and_the_others_finish(corpus, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(corpus, broken)
    found = find_clips(broken, dataset="synth", split="all")
    (broken / "Wavfile" / f"{found[0].name}.wav").write_bytes(b"not a wav file")
    report = evaluation.evaluate(found, ["mix"], jobs=2, progress=False)
    assert report["status"] == "complete"
    assert report["clips_done"] == 2 and report["clips_failed"] == 1
    assert report["failures"][0]["name"] == found[0].name
    assert found[0].name in report["failures"][0]["error"]  # the error names the file
    assert report["summary"]["mix"]["clips"] == 2


def test_a_failing_method_is_recorded_and_the_others_still_scored(sources, monkeypatch):
    def explode(clip: Clip) -> dict:
        raise RuntimeError(f"cannot separate {clip.name}")

    monkeypatch.setitem(methods._separators, "explode", explode)
    report = evaluation.evaluate(sources[:2], ["explode", "mix"], in_process=True,
                                 progress=False)
    entry = report["clips"][0]["methods"]["explode"]
    assert entry["error"].startswith("RuntimeError: cannot separate")
    assert "Traceback" in entry["traceback"]
    assert report["summary"]["explode"]["failed"] == 2
    assert report["summary"]["explode"]["sources"]["vocals"]["sdr"]["n"] == 0
    assert report["summary"]["mix"]["sources"]["vocals"]["sdr"]["n"] == 2


def test_ctrl_c_leaves_a_report_of_the_finished_clips(sources, tmp_path):
    out = tmp_path / "partial.json"
    with pytest.raises(KeyboardInterrupt):
        evaluation.evaluate([sources[0], InterruptingSource(), sources[1]], ["mix"],
                            in_process=True, json_path=out, progress=False)
    partial = json.loads(out.read_text())
    assert partial["status"] == "interrupted"
    assert partial["clips_total"] == 3 and partial["clips_done"] == 1
    assert partial["clips"][0]["name"] == sources[0].name
    assert partial["summary"]["mix"]["clips"] == 1


def test_ctrl_c_in_a_worker_stops_the_pool_and_keeps_the_report(sources, tmp_path):
    out = tmp_path / "partial.json"
    with pytest.raises(KeyboardInterrupt):
        evaluation.evaluate([InterruptingSource(), *sources], ["mix"], jobs=2, json_path=out,
                            progress=False)
    partial = json.loads(out.read_text())
    assert partial["status"] == "interrupted" and partial["clips_total"] == 4
    assert partial["clips_done"] < 4


def test_unknown_method_fails_before_any_work():
    with pytest.raises(ValueError, match="unknown separation method 'nope'"):
        methods.parse_methods("mix,nope")
    with pytest.raises(ValueError, match="listed twice: mix"):
        methods.parse_methods("mix,irm,mix")
    assert methods.parse_methods(" mix , repet-sim ") == ["mix", "repet-sim"]


def test_cli_prints_the_table_and_writes_json_and_png(corpus, tmp_path, capsys):
    out = tmp_path / "results" / "eval.json"
    rc = main(["eval", "--method", "mix,hpss,irm", "--data", str(corpus), "--split", "all",
               "--max-clips", "2", "--jobs", "1", "--json", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "Accompaniment (dB)" in printed and "Vocals (dB)" in printed
    assert printed.index("Accompaniment (dB)") < printed.index("Vocals (dB)")  # paper order
    for header in ("SDR mean", "SDR med", "SIR mean", "SAR med", "NSDR", "GNSDR"):
        assert header in printed
    rows = [line.split() for line in printed.splitlines() if line.startswith("mix ")]
    assert len(rows) == 2 and all(row[7] == "0.00" for row in rows)  # NSDR of the mixture
    assert "clip-seconds per wall-second" in printed
    report = json.loads(out.read_text())
    assert report["clips_done"] == 2 and set(report["summary"]) == {"mix", "hpss", "irm"}
    assert report["split"] == "all" and report["max_clips"] == 2
    # the first method against the others, clip by clip, with an interval over the songs
    assert "mix minus each method" in printed
    paired = {row["method"]: row["sources"] for row in report["paired"]["rows"]}
    assert report["paired"]["model"] == "mix" and set(paired) == {"hpss", "irm"}
    for method in ("hpss", "irm"):
        for source in ("vocals", "accompaniment"):
            diff = paired[method][source]
            clips = report["clips"]
            expected = sum(c["methods"]["mix"]["sources"][source]["sdr"]
                           - c["methods"][method]["sources"][source]["sdr"] for c in clips) / 2
            assert diff["mean"] == pytest.approx(expected)
            assert (diff["clips"], diff["songs"]) == (2, 2)
            assert diff["low"] <= diff["mean"] <= diff["high"]
    assert paired["irm"]["vocals"]["high"] < 0  # the oracle is far above the mixture
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "mix,bogus"], "unknown separation method 'bogus'"),
        (["--max-clips", "0"], "--max-clips must be at least 1"),
        (["--data", "/nonexistent/tinysep-data"], "/nonexistent/tinysep-data"),
        (["--level-db", "40"], "--level-db must be between -60 and 20 dB, got 40"),
    ],
)
def test_cli_user_errors_are_one_line(corpus, tmp_path, capsys, args, message):
    base = {"--method": "mix", "--data": str(corpus), "--json": str(tmp_path / "e.json")}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    argv = ["eval", "--no-progress"] + [x for pair in base.items() for x in pair]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_level_db_plays_clips_and_references_at_that_level(corpus, sources, tmp_path, capsys):
    leveled = evaluation.PlayedSource(sources[0], -20.0)
    plain, quiet = sources[0].load(), leveled.load()
    assert leveled.name == sources[0].name == quiet.name
    for name in ("mixture", "vocals", "accompaniment"):
        assert (getattr(quiet, name) == pytest.approx(getattr(plain, name) * 0.1, abs=1e-7))
    first = tmp_path / "level0.json"
    args = ["eval", "--method", "mix,hpss", "--data", str(corpus), "--split", "all",
            "--max-clips", "2", "--jobs", "1", "--no-progress"]
    assert main([*args, "--json", str(first)]) == 0
    assert main([*args, "--json", str(tmp_path / "quiet.json"), "--level-db", "-20"]) == 0
    assert "played -20 dB" in capsys.readouterr().out
    at_0, at_20 = (json.loads(p.read_text()) for p in (first, tmp_path / "quiet.json"))
    assert (at_0["level_db"], at_20["level_db"]) == (0.0, -20.0)
    for a, b in zip(at_0["clips"], at_20["clips"], strict=True):
        # the mixture scored against references played alike: the same SDR at any level
        assert a["methods"]["mix"]["sources"]["vocals"]["sdr"] == pytest.approx(
            b["methods"]["mix"]["sources"]["vocals"]["sdr"], abs=1e-3)
    assert main([*args, "--json", str(tmp_path / "r.json"), "--level-db", "-20",
                 "--reuse", str(first)]) == 2
    err = capsys.readouterr().err
    assert "played at +0 dB, this run plays them at -20 dB" in err
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("content, expected", [
    ("[1, 2]", "expected a JSON object"),
    ('{"clips": {"a": 1}}', 'expected "clips": a list of objects'),
    ('{"clips": [{"name": "a", "methods": []}]}', 'expected "clips": a list of objects'),
    ("{not json", "is not readable JSON"),
])
def test_reuse_of_a_file_that_is_no_eval_report_is_refused_naming_it(corpus, tmp_path, capsys,
                                                                      content, expected):
    earlier = tmp_path / "earlier.json"
    earlier.write_text(content)
    out = tmp_path / "r.json"
    assert main(["eval", "--method", "mix", "--data", str(corpus), "--split", "all",
                 "--max-clips", "1", "--jobs", "1", "--no-progress", "--json", str(out),
                 "--reuse", str(earlier)]) == 2
    err = capsys.readouterr().err
    assert f"--reuse {earlier}" in err and expected in err
    assert not out.exists()
