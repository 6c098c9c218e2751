"""The emulated ARM boards: the unchanged agent on Debian arm64 Python, numpy and the aarch64
LiteRT (and on armhf with the armv7l tflite-runtime) under qemu-user, driven over a real
pseudo-terminal. `make board-arm64` / `make board-armhf` build the roots.

Tests marked ``arm64`` / ``armhf`` need that root and skip without it (`make test-arm64`
builds it first); the others check the launcher, the expectations and the errors without it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
from board_bundle import make_bundle
from test_link_support import fast_host_config

from cli.main import main
from firmware_host.bundle import read_bundle
from firmware_host.protocol.link import Link
from firmware_host.transport import open_port
from hil import emulated_arm
from hil.client import BoardClient
from hil.emulator import agent_command


def board(arch: str):
    """A test parameter for the emulated ``arch`` board: its marker, skipped without a root."""
    return pytest.param(arch, id=arch, marks=[
        getattr(pytest.mark, arch),
        pytest.mark.skipif(not emulated_arm.root_available(arch),
                           reason=f"no emulated {arch} board root: `make board-{arch}` builds it"),
    ])


BOARDS = [board("arm64"), board("armhf")]
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
    for arch in emulated_arm.ARCHES:
        monkeypatch.setenv(f"TINYSEP_{arch.upper()}_ROOT", str(missing))
    return missing


def pinned_runtime(arch: str) -> str:
    """The runtime label the built root runs, from its build record."""
    record = emulated_arm.read_stamp(emulated_arm.default_root(arch))
    return emulated_arm.runtime_label(record["wheel"])


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
    import numpy as np
    import soundfile

    bundle, model = make_bundle(float_model=True)
    song = tmp_path / "song.wav"  # valid audio: the missing root is the only fault
    soundfile.write(str(song), np.zeros(1600, np.float32), 16000)
    status = main(["hil", "--emulate", "--board-arch", "arm64", "--bundle", str(bundle),
                   "--float", str(model), "--data", str(song), "--report",
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
    exact, why = measured("armhf", "tflite_runtime 2.11.0", "cpu", "ai_edge_litert 2.3.0")
    assert not exact and "measured up to 36 LSB" in why and "SDR checks decide" in why
    # the same version on two CPUs is not a measurement
    exact, why = measured("arm64", "ai_edge_litert 2.3.0", "cpu", "ai_edge_litert 2.3.0")
    assert not exact and "not measured" in why
    assert measured("host", "ai_edge_litert 1.4.0", "cpu", "ai_edge_litert 2.3.0") is None
    assert measured(None, "ai_edge_litert 1.4.0", "cpu", "ai_edge_litert 2.3.0") is None
    assert measured("arm64", "ai_edge_litert 1.4.0", "edgetpu", "ai_edge_litert 2.3.0") is None


def test_bench_section_without_a_root_is_a_note(no_root):
    result = emulated_arm.bench_section(quick=True)
    assert result["rows"] == [] and result["emulated"]
    assert "make board-arm64" in result["note"] and "make board-armhf" in result["note"]
    assert "not real time" in result["title"]


@pytest.mark.parametrize("arch", BOARDS)
def test_the_root_runs_arm_python_numpy_and_the_pinned_runtime(arch):
    found = emulated_arm.probe(arch)
    assert found["machine"] == {"arm64": "aarch64", "armhf": "armv7l"}[arch]
    assert found["runtime"] == pinned_runtime(arch)
    assert found["numpy"].startswith("1.") and found["python"].startswith("3.")


@pytest.mark.parametrize("arch", BOARDS)
def test_hil_on_the_emulated_arm_board_meets_the_measured_expectation(arch, corpus, tmp_path):
    bundle, model = make_bundle(float_model=True)
    report_dir = tmp_path / "report"
    status = main(["hil", "--emulate", "--board-arch", arch, "--bundle", str(bundle),
                   "--float", str(model), "--data", str(corpus), "--split", "all",
                   "--max-clips", "2", "--plots", "0", "--timeout", "60",
                   "--report", str(report_dir), "--no-progress"])
    report = json.loads((report_dir / "hil.json").read_text())
    assert status == 0, report.get("error")
    board = report["board"]
    assert board["arch"] == arch and board["emulated"] and board["delegate"] == "cpu"
    assert board["runtime"] == pinned_runtime(arch)
    summary = report["summary"]
    assert summary["clips_ok"] == 2 and summary["lsb"]["samples"] > 2 * 2 * 16000
    check = next(c for c in report["checks"] if c["name"] == "board_vs_host_int8_lsb")
    if arch == "arm64":  # measured bit-exact: the limit is 0 LSB
        assert board["exact_expected"] and "measured bit-exact" in board["exact_reason"]
        assert summary["lsb"]["max_abs"] == 0 and report["tensor_check"]["max_abs_diff"] == 0
        assert check["passed"] is True
        sdr_tolerance = 0.01
    else:  # measured tens of LSB on 32-bit ARM: reported, the SDR decides
        assert not board["exact_expected"] and "measured up to" in board["exact_reason"]
        assert summary["lsb"]["max_abs"] > 0 and check["passed"] is None
        sdr_tolerance = 0.05
    for clip in report["clips"]:
        for source, scores in clip["scores"]["int8_board"].items():
            assert scores["sdr"] == pytest.approx(clip["scores"]["int8_host"][source]["sdr"],
                                                  abs=sdr_tolerance)
    assert summary["invoke_us"]["p50"] > 0


@pytest.mark.parametrize("arch", BOARDS[:1])
def test_board_emulate_arch_serves_the_bundle_until_sigint(arch):
    bundle = read_bundle(make_bundle())
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "board", "--emulate", "--arch", arch,
         "--bundle", bundle.folder],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith(f"emulated {arch} board on /dev/"), line + process.stderr.read()
        link = Link(open_port(line.split()[4]), fast_host_config(), name="host")
        client = BoardClient(link, timeout=START_SECONDS)
        client.connect(timeout=START_SECONDS)
        info = client.info()
        assert info.runtime == pinned_runtime(arch) and info.delegate == "cpu"
        assert info.model_sha256.hex() == bundle.model_sha256
        link.close(close_stream=True)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
