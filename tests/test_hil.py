"""The HIL harness end to end: `tinysep hil` on an emulated board (the agent in a subprocess on a
real pseudo-terminal, opened through pyserial), its reports, thresholds, a board running
another model (and --flash), a bad bundle, and a run that dies midway.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from board_bundle import copy_bundle, make_bundle
from board_support import FAST_AGENT_ARGS

from cli.main import main
from hil.bench import stream_once
from hil.emulator import EmulatedBoard
from hil.harness import HilSettings, run_hil
from hil.report import finalize, junit_xml
from hil.session import BoardSession


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from tinysep.data.synth import write_corpus

    root = tmp_path_factory.mktemp("hil-data")
    write_corpus(root, songs=2, seconds=5.0, seed=3, progress=False)
    return root


@pytest.fixture(scope="module")
def passed_run(corpus, tmp_path_factory):
    bundle, model = make_bundle(float_model=True)
    report = tmp_path_factory.mktemp("hil-report")
    argv = ["hil", "--emulate", "--bundle", str(bundle), "--float", str(model),
            "--data", str(corpus), "--split", "all", "--max-clips", "2", "--plots", "1",
            "--report", str(report), "--no-progress"]
    return main(argv), report


def test_hil_on_an_emulated_board_passes_and_writes_every_report(passed_run):
    status, folder = passed_run
    assert status == 0
    report = json.loads((folder / "hil.json").read_text())
    assert report["status"] == "finished" and report["passed"]
    summary = report["summary"]
    assert summary["clips_ok"] == 2 and summary["clips_failed"] == 0
    assert report["board"]["emulated"] and report["board"]["delegate"] == "cpu"
    assert report["board"]["exact_expected"]
    assert summary["lsb"]["max_abs"] == 0 and summary["lsb"]["samples"] > 2 * 16000
    assert report["tensor_check"]["max_abs_diff"] == 0 and report["tensor_check"]["invokes"] == 8
    assert report["int8_host_runner"] == "convert.runtime"
    for clip in report["clips"]:
        assert clip["stream"]["positions_ok"] and clip["stream"]["recoveries"] == []
        assert clip["stream"]["link"]["resends"] == 0
        # the board separates like the host int8 runner: same SDR to a hundredth of a dB
        for source, scores in clip["scores"]["int8_board"].items():
            assert scores["sdr"] == pytest.approx(clip["scores"]["int8_host"][source]["sdr"],
                                                  abs=0.01)
    for source in ("vocals", "accompaniment"):
        assert abs(summary["drop"]["int8_board"][source]) < 0.5
        assert summary["scores"]["float"][source]["sdr"] is not None
        # the drop's interval resamples the two songs: it spans their two clips' drops
        interval = summary["drop_interval"]["int8_board"][source]
        drops = [clip["drop"]["int8_board"][source] for clip in report["clips"]]
        assert (interval["clips"], interval["songs"]) == (2, 2)
        assert interval["mean"] == pytest.approx(summary["drop"]["int8_board"][source])
        assert interval["low"] == pytest.approx(min(drops), abs=1e-9)
        assert interval["high"] == pytest.approx(max(drops), abs=1e-9)
    assert len({clip["song"] for clip in report["clips"]}) == 2
    assert summary["invoke_us"]["p50"] > 0 and summary["invoke_us"]["p99"] >= summary[
        "invoke_us"]["p50"]
    assert summary["realtime_factor"] > 1.0 and summary["wire_bytes_per_second"] > 0
    names = [c["name"] for c in report["checks"]]
    assert names[:4] == ["stream_integrity", "sdr_drop_vocals", "sdr_drop_accompaniment",
                         "board_vs_host_int8_lsb"]
    assert all(c["passed"] for c in report["checks"])

    suite = ET.parse(folder / "hil.junit.xml").getroot()
    assert suite.get("tests") == str(2 + len(report["checks"])) and suite.get("failures") == "0"
    markdown = (folder / "hil.md").read_text()
    assert "report: PASSED" in markdown and "| int8 (board) |" in markdown
    assert "% over songs)" in markdown
    assert (folder / "figures" / "sdr_bars.png").stat().st_size > 10_000
    assert len(list((folder / "figures").glob("clip_000_*.png"))) == 1
    assert "model" in (folder / "agent.log").read_text()


def test_a_failed_threshold_fails_the_report_and_the_junit(passed_run):
    _, folder = passed_run
    report = json.loads((folder / "hil.json").read_text())
    drops = report["summary"]["drop"]["int8_board"]
    worst = max(drops, key=drops.get)
    limit = drops[worst] - 0.001  # just below what was measured for the worse source
    report["settings"]["max_sdr_drop"] = limit
    finalize(report)
    assert not report["passed"]
    failed = [c["name"] for c in report["checks"] if c["passed"] is False]
    assert failed == [f"sdr_drop_{s}" for s in drops if drops[s] > limit]
    suite = ET.fromstring(junit_xml(report))
    assert suite.get("failures") == str(len(failed))
    assert suite.find(f"testcase[@name='sdr_drop_{worst}']/failure") is not None


def test_a_board_with_another_model_stops_the_run_and_flash_fixes_it(corpus, tmp_path):
    board_bundle = copy_bundle(make_bundle(seed=8), tmp_path / "board-bundle")
    bundle, model = make_bundle(float_model=True)
    with EmulatedBoard(board_bundle, extra_args=FAST_AGENT_ARGS) as board:
        base = ["hil", "--port", board.path, "--bundle", str(bundle), "--float", str(model),
                "--data", str(corpus), "--split", "all", "--max-clips", "1", "--plots", "0",
                "--no-progress"]
        assert main(base + ["--report", str(tmp_path / "r1")]) == 3
        report = json.loads((tmp_path / "r1" / "hil.json").read_text())
        assert report["status"] == "aborted" and "tinysep flash" in report["error"]
        assert report["clips"] == [] and not report["passed"]
        lsb = next(c for c in report["checks"] if c["name"] == "board_vs_host_int8_lsb")
        assert "not judged: the run stopped before" in lsb["text"], lsb  # INFO was read
        assert main(base + ["--report", str(tmp_path / "r2"), "--flash"]) == 0
        report = json.loads((tmp_path / "r2" / "hil.json").read_text())
        assert report["board"]["flashed"] and report["passed"]
        flashed = (board.bundle / "model.tflite").read_bytes()
    assert flashed == (bundle / "model.tflite").read_bytes()
    # the emulated board flashed its own copy: the folder it was started from is untouched
    assert (board_bundle / "model.tflite").read_bytes() == (
        make_bundle(seed=8) / "model.tflite").read_bytes()


def test_a_bundle_whose_manifest_does_not_match_its_model(corpus, tmp_path, capsys):
    bundle, model = make_bundle(float_model=True)
    bad = copy_bundle(bundle, tmp_path / "bad")
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["output"]["scale"] *= 2.0  # the sha256 still matches: only the model can tell
    (bad / "manifest.json").write_text(json.dumps(manifest))
    argv = ["hil", "--emulate", "--bundle", str(bad), "--float", str(model), "--data",
            str(corpus), "--split", "all", "--report", str(tmp_path / "r"), "--no-progress"]
    assert main(argv) == 3  # the board cannot run: a board fault, not a failed check
    report = json.loads((tmp_path / "r" / "hil.json").read_text())
    assert report["status"] == "aborted" and report["fault"] == "board"
    assert "no model loaded" in report["error"] and "does not match the model" in report["error"]
    tampered = bytearray((bad / "model.tflite").read_bytes())
    tampered[-1] ^= 0x01  # now the sha256 check catches it before anything starts
    (bad / "model.tflite").write_bytes(bytes(tampered))
    assert main(argv) == 2
    assert "does not belong to this model" in capsys.readouterr().err


class DyingBoardSession(BoardSession):
    """A session whose board loses power for good before the second clip."""

    board = None
    clips = 0

    def stream_clip(self, *args, **kwargs):
        self.clips += 1
        if self.clips == 2:
            self.board.kill()
        return super().stream_clip(*args, **kwargs)


def test_a_run_that_dies_midway_leaves_a_usable_report(corpus, tmp_path):
    from test_link_support import fast_host_config

    bundle, model = make_bundle(float_model=True)
    settings = HilSettings(bundle=str(bundle), float_model=str(model), data=str(corpus),
                           report_dir=str(tmp_path), split="all", plots=0, progress=False)
    with EmulatedBoard(bundle, extra_args=FAST_AGENT_ARGS) as board:
        session = DyingBoardSession(port=board.path, config=fast_host_config(max_retries=6),
                                    reply_timeout=2.0, connect_timeout=1.0)
        session.board = board
        with session:
            report = run_hil(session, settings, {"port": board.path, "emulated": True})
    assert report["status"] == "aborted" and "did not come back" in report["error"]
    on_disk = json.loads((tmp_path / "hil.json").read_text())
    assert on_disk["status"] == "aborted" and not on_disk["passed"]
    assert [c["status"] for c in on_disk["clips"]] == ["ok", "error"]
    assert on_disk["summary"]["clips_ok"] == 1 and on_disk["summary"]["audio_seconds"] > 3
    suite = ET.parse(tmp_path / "hil.junit.xml").getroot()
    assert suite.find("testcase[@name='run_completed']/failure") is not None
    assert "Hardware-in-the-loop report: FAILED" in (tmp_path / "hil.md").read_text()


def test_bench_streaming_measures_overhead_and_obeys_the_emulated_baud():
    bundle = make_bundle()
    fast = stream_once(bundle, 1.0)
    assert 0.0 < fast["overhead"] < 0.05  # default chunk: under the 5 % target
    assert fast["pcm_bytes"] < fast["wire_bytes"] < 1.06 * fast["pcm_bytes"]
    slow = stream_once(bundle, 1.0, baud=921600)
    line_seconds = slow["bytes_to_host"] / (921600 / 10.0)  # 8N1: 10 bits per byte
    assert slow["wall_seconds"] >= 0.95 * line_seconds
    assert slow["x_realtime"] < fast["x_realtime"]
