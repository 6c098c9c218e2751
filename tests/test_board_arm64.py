"""The emulated ARM64 board: the unchanged agent on Debian arm64 Python, numpy and the aarch64
LiteRT under qemu-user (`make board-arm64` builds its root), driven over a real pseudo-terminal.

Tests marked ``arm64`` need the root and skip without it (`make test-arm64` builds it first);
the others check the launcher, the expectations and the errors without it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
from board_bundle import make_bundle
from test_link_support import fast_host_config

from firmware_host import emulated_arm
from firmware_host.board.bundle import read_bundle
from firmware_host.emulator import agent_command
from firmware_host.protocol.client import BoardClient
from firmware_host.protocol.link import Link
from firmware_host.transport import open_port
from tinysep.cli import main

needs_root = pytest.mark.skipif(
    not emulated_arm.root_available("arm64"),
    reason="no emulated arm64 board root: `make board-arm64` builds it",
)
# qemu-user starts the root's Python and numpy in a few seconds unloaded; give it room.
START_SECONDS = 120.0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from tinysep.data.synth import write_corpus

    root = tmp_path_factory.mktemp("arm64-data")
    write_corpus(root, songs=2, seconds=4.0, seed=3, progress=False)
    return root


@pytest.fixture
def no_root(tmp_path, monkeypatch):
    missing = tmp_path / "no-root"
    monkeypatch.setenv("TINYSEP_ARM64_ROOT", str(missing))
    return missing


def pinned_runtime() -> str:
    """The runtime label the built root runs, from its build record."""
    record = emulated_arm.read_stamp(emulated_arm.default_root("arm64"))
    return "ai_edge_litert " + record["wheel"].split("==")[1]


def test_missing_root_says_how_to_build_it(no_root, tmp_path, capsys):
    with pytest.raises(emulated_arm.ArmRootMissing, match="make board-arm64") as caught:
        emulated_arm.check_root("arm64")
    assert str(no_root) in str(caught.value)
    assert not emulated_arm.root_available("arm64")
    handlers = {n: signal.getsignal(n) for n in (signal.SIGINT, signal.SIGTERM)}
    try:  # `tinysep board --emulate` installs its own handlers
        status = main(["board", "--emulate", "--arch", "arm64", "--bundle", str(tmp_path)])
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
    assert status == 2
    assert "make board-arm64" in capsys.readouterr().err


def test_hil_with_a_missing_root_is_a_usage_error(no_root, tmp_path, capsys):
    bundle, model = make_bundle(float_model=True)
    status = main(["hil", "--emulate", "--board-arch", "arm64", "--bundle", str(bundle),
                   "--float", str(model), "--data", str(tmp_path), "--report",
                   str(tmp_path / "report"), "--no-progress"])
    assert status == 2
    assert "make board-arm64" in capsys.readouterr().err


def test_board_arch_is_only_for_an_emulated_board(tmp_path, capsys):
    assert main(["hil", "--port", "/dev/null", "--board-arch", "arm64", "--bundle", "b",
                 "--float", "f", "--data", "d", "--report", str(tmp_path / "r")]) == 2
    assert "--board-arch is for --emulate" in capsys.readouterr().err
    assert main(["board", "--port", "/dev/null", "--arch", "arm64", "--bundle", "b"]) == 2
    assert "--arch is for --emulate" in capsys.readouterr().err


def test_unknown_arch_and_conflicting_python_are_refused():
    with pytest.raises(ValueError, match="unknown board architecture 'sparc'"):
        emulated_arm.arch_spec("sparc")
    with pytest.raises(ValueError, match="--board-python"):
        emulated_arm.board_launch("arm64", python="/usr/bin/python3")
    assert emulated_arm.board_launch("host", python="/usr/bin/python3") == {}


def test_agent_command_runs_under_the_given_interpreter():
    command = agent_command(5, "/b", interpreter=["qemu-aarch64-static", "-L", "/r", "/r/py"])
    assert command[:6] == ["qemu-aarch64-static", "-L", "/r", "/r/py", "-m",
                           "firmware_host.board"]
    assert command[6:] == ["--fd", "5", "--bundle", "/b"]


def test_exactness_is_expected_only_for_measured_runtime_pairs():
    measured = emulated_arm.measured_exactness
    exact, why = measured("arm64", "ai_edge_litert 1.4.0", "cpu", "ai_edge_litert 2.3.0")
    assert exact and "measured bit-exact" in why and "default kernels" in why
    exact, why = measured("arm64", "ai_edge_litert 1.4.0", "cpu-reference",
                          "ai_edge_litert 2.3.0")
    assert exact and "reference kernels" in why
    # the same version on two CPUs is not a measurement
    exact, why = measured("arm64", "ai_edge_litert 2.3.0", "cpu", "ai_edge_litert 2.3.0")
    assert not exact and "not measured" in why
    assert measured("host", "ai_edge_litert 1.4.0", "cpu", "ai_edge_litert 2.3.0") is None
    assert measured(None, "ai_edge_litert 1.4.0", "cpu", "ai_edge_litert 2.3.0") is None
    assert measured("arm64", "ai_edge_litert 1.4.0", "edgetpu", "ai_edge_litert 2.3.0") is None


def test_bench_section_without_a_root_is_a_note(no_root):
    result = emulated_arm.bench_section(quick=True)
    assert result["rows"] == [] and result["emulated"]
    assert "make board-arm64" in result["note"] and "not real time" in result["title"]


@pytest.mark.arm64
@needs_root
def test_the_root_runs_aarch64_python_numpy_and_the_pinned_runtime():
    found = emulated_arm.probe("arm64")
    assert found["machine"] == "aarch64"
    assert found["runtime"] == pinned_runtime()
    assert found["numpy"].startswith("1.") and found["python"].startswith("3.")


@pytest.mark.arm64
@needs_root
def test_hil_on_the_emulated_arm64_board_is_bit_exact_with_the_host(corpus, tmp_path):
    bundle, model = make_bundle(float_model=True)
    report_dir = tmp_path / "report"
    status = main(["hil", "--emulate", "--board-arch", "arm64", "--bundle", str(bundle),
                   "--float", str(model), "--data", str(corpus), "--split", "all",
                   "--max-clips", "2", "--plots", "0", "--timeout", "60",
                   "--report", str(report_dir), "--no-progress"])
    report = json.loads((report_dir / "hil.json").read_text())
    assert status == 0, report.get("error")
    board = report["board"]
    assert board["arch"] == "arm64" and board["emulated"] and board["delegate"] == "cpu"
    assert board["runtime"] == pinned_runtime()
    assert board["exact_expected"] and "measured bit-exact" in board["exact_reason"]
    summary = report["summary"]
    assert summary["clips_ok"] == 2
    assert summary["lsb"]["max_abs"] == 0 and summary["lsb"]["samples"] > 2 * 2 * 16000
    assert report["tensor_check"]["max_abs_diff"] == 0
    check = next(c for c in report["checks"] if c["name"] == "board_vs_host_int8_lsb")
    assert check["passed"] is True
    for clip in report["clips"]:
        for source, scores in clip["scores"]["int8_board"].items():
            assert scores["sdr"] == pytest.approx(clip["scores"]["int8_host"][source]["sdr"],
                                                  abs=0.01)
    assert summary["invoke_us"]["p50"] > 0


@pytest.mark.arm64
@needs_root
def test_board_emulate_arch_arm64_serves_the_bundle_until_sigint():
    bundle = read_bundle(make_bundle())
    process = subprocess.Popen(
        [sys.executable, "-m", "tinysep.cli", "board", "--emulate", "--arch", "arm64",
         "--bundle", bundle.folder],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("emulated arm64 board on /dev/"), line + process.stderr.read()
        link = Link(open_port(line.split()[4]), fast_host_config(), name="host")
        client = BoardClient(link, timeout=START_SECONDS)
        client.connect(timeout=START_SECONDS)
        info = client.info()
        assert info.runtime == pinned_runtime() and info.delegate == "cpu"
        assert info.model_sha256.hex() == bundle.model_sha256
        link.close(close_stream=True)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
