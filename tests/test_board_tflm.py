"""The board agent on TensorFlow Lite Micro's own kernels (``--runtime tflite_micro``): audio and
tensor mode over a real pseudo-terminal against the host LiteRT pipeline, the tensor arena from
the manifest, an arena too small for the model, and the HIL verdict for a board whose kernels
are not bit-exact with the host's.

Bounds measured on the test bundles (two seeds, K = 1 and 3, three test signals): masks and
states within 3 LSB of LiteRT per invoke, separated audio >= 63 dB above its difference from
the host's, SDR within 0.001 dB of the host's. The asserted bounds leave a margin.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from board_bundle import calibration_clips, copy_bundle, make_bundle
from board_support import FAST_AGENT_ARGS, host_client

from cli.main import main
from firmware_host.board.agent import BoardAgent
from firmware_host.board.micro import ARENA_MARGIN, FALLBACK_ARENA
from firmware_host.board.pipeline import StreamingSeparator, to_pcm
from firmware_host.board.runtime import RuntimeUnavailable, load_runtime
from firmware_host.bundle import BundleError, read_bundle
from firmware_host.protocol.messages import AudioChunk, Tensor
from hil.emulator import REPO_ROOT, EmulatedBoard, PtyPair, agent_command
from hil.reference import HostPipeline
from hil.report import finalize
from tinysep.metrics.bss import bss_eval

MASK_LSB = 6  # largest |TFLite Micro - LiteRT| of a raw mask value (measured <= 3)
STATE_LSB = 6  # the same for the state outputs (measured <= 3)
AUDIO_SNR_DB = 50.0  # host output power over |board - host| power (measured >= 63 dB)
SDR_DIFFERENCE_DB = 0.01  # |SDR board - SDR host| against the true sources (measured < 0.001)
CHUNK = 1024
MICRO_ARGS = ["--runtime", "tflite_micro"]


def _edit_manifest(folder, edit) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def _stream(separator, pcm) -> np.ndarray:
    return np.concatenate(
        [separator.process(pcm[i : i + CHUNK])[0] for i in range(0, pcm.size, CHUNK)], axis=1
    )


def _snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    reference = reference.astype(np.float64)
    error = other.astype(np.float64) - reference
    return float(10 * np.log10((reference**2).sum() / max((error**2).sum(), 1e-12)))


def test_agent_on_tflite_micro_separates_within_a_few_lsb_of_the_host_litert_pipeline():
    bundle_dir = make_bundle()
    bundle = read_bundle(bundle_dir)
    assert bundle.arena_tflite_micro is not None  # measured by the export
    host = HostPipeline(bundle)  # ai_edge_litert, the host's runtime
    micro_runtime = load_runtime("tflite_micro")
    micro = micro_runtime.make_interpreter(
        bundle.model_path, measured_arena=bundle.arena_tflite_micro
    )
    assert micro.arena_bytes == bundle.arena_tflite_micro + ARENA_MARGIN
    clip = calibration_clips(count=1, seconds=2.5)[0]
    pcm = to_pcm(clip.mixture)
    pcm = pcm[: pcm.size // CHUNK * CHUNK]
    delay = bundle.delay_samples
    padded = np.concatenate([pcm, np.zeros(2 * CHUNK, np.int16)])

    with EmulatedBoard(bundle_dir, extra_args=MICRO_ARGS + FAST_AGENT_ARGS) as board:
        client = host_client(board.path)
        info = client.info()
        assert info.runtime == micro_runtime.label and info.runtime.startswith("tflite_micro 0.")
        assert info.delegate == "cpu" and info.model_sha256.hex() == bundle.model_sha256
        client.reset_state()
        chunks = [AudioChunk(i, padded[i : i + CHUNK]) for i in range(0, padded.size, CHUNK)]
        replies = list(client.stream(chunks))
        assert [r.position for r in replies] == list(range(0, padded.size, CHUNK))
        board_out = np.concatenate([r.sources for r in replies], axis=1)

        records = host.tensor_check_inputs(pcm, 16)
        worst_mask = worst_state = 0
        for inputs in records:
            reply = client.run_tensors([Tensor(i, a) for i, a in enumerate(inputs)])
            expected = host.run_tensors(inputs)
            outputs = zip(reply.tensors, micro.get_output_details(), expected, strict=True)
            for tensor, detail, want in outputs:
                assert tensor.array.dtype == want.dtype and tensor.array.shape == want.shape
                diff = int(np.abs(tensor.array.astype(np.int32) - want).max())
                if detail["index"] == bundle.output.index:
                    worst_mask = max(worst_mask, diff)
                else:
                    worst_state = max(worst_state, diff)
        client.link.close()

    # the agent ran TFLite Micro's kernels: the same as TFLite Micro in this process, bit for
    # bit, and not the same as LiteRT
    assert np.array_equal(board_out, _stream(StreamingSeparator(bundle, micro), padded))
    host.separator.reset()
    host_out = _stream(host.separator, padded)
    assert not np.array_equal(board_out, host_out)
    assert worst_mask <= MASK_LSB and worst_state <= STATE_LSB, (worst_mask, worst_state)

    board_audio = board_out[:, delay : delay + pcm.size]
    host_audio = host_out[:, delay : delay + pcm.size]
    assert np.abs(host_audio).max() > 1000  # not a comparison of two silences
    for source in range(len(bundle.sources)):
        snr = _snr_db(host_audio[source], board_audio[source])
        assert snr >= AUDIO_SNR_DB, f"{bundle.sources[source]}: {snr:.1f} dB"
    references = np.stack([clip.source(name)[: pcm.size] for name in bundle.sources])
    sdr_board = bss_eval(references, board_audio / 32768.0)[0]
    sdr_host = bss_eval(references, host_audio / 32768.0)[0]
    assert np.abs(sdr_board - sdr_host).max() < SDR_DIFFERENCE_DB, (sdr_board, sdr_host)


def test_a_long_framing_bundle_runs_on_tflite_micro_close_to_the_host():
    """A pooled long-framing bundle on TFLite Micro: the board pools the features and spreads
    the pair masks around the model, whose pipeline stays within the audio bound of the
    LiteRT one."""
    options = {"residual": 8, "hidden": 16, "blocks": 2, "repeats": 1,
               "framing": "long1024", "pool_above": 257, "mask": "anchored"}
    bundle = read_bundle(make_bundle(options=options, frames_per_invoke=2, train_steps=2))
    assert bundle.n_bins == 513 and bundle.arena_tflite_micro is not None
    assert bundle.n_features == 385 and "AVERAGE_POOL_2D" not in bundle.manifest["micro_ops"]
    micro = load_runtime("tflite_micro").make_interpreter(
        bundle.model_path, measured_arena=bundle.arena_tflite_micro)
    pcm = to_pcm(calibration_clips(count=1, seconds=2.0)[0].mixture)
    pcm = pcm[: pcm.size // CHUNK * CHUNK]
    board_out = _stream(StreamingSeparator(bundle, micro), pcm)
    host_out = _stream(HostPipeline(bundle).separator, pcm)
    assert np.abs(host_out).max() > 1000
    for source in range(len(bundle.sources)):
        assert _snr_db(host_out[source], board_out[source]) >= AUDIO_SNR_DB


def _run(command) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=str(REPO_ROOT), capture_output=True, text=True,
                          timeout=60)


def test_an_arena_too_small_stops_the_agent_with_the_arena_size_and_bad_fields_are_named(
    tmp_path,
):
    bundle_dir = copy_bundle(make_bundle(), tmp_path / "bundle")
    _edit_manifest(bundle_dir, lambda m: m["arena_tflite_micro"].update(bytes=256))
    with PtyPair() as pair:  # the agent fails before it serves: one child process each
        agent = _run(agent_command(pair.slave_path, bundle_dir, extra_args=MICRO_ARGS))
    script = "import sys; from cli.main import main; sys.exit(main(sys.argv[1:]))"
    cli = _run([sys.executable, "-c", script, "board", "--emulate", "--runtime", "tflite_micro",
                "--bundle", str(bundle_dir)])
    size = f"{256 + ARENA_MARGIN:,}"
    for result in (agent, cli):
        assert result.returncode == 2, result.stderr
        assert f"tensor arena of {size} bytes" in result.stderr
        assert "manifest arena_tflite_micro.bytes 256" in result.stderr
        assert "Traceback" not in result.stderr
    assert "tinysep board: error: TFLite Micro could not allocate" in cli.stderr

    # no measured figure: the agent allocates a generous arena and runs
    _edit_manifest(bundle_dir, lambda m: m.update(arena_tflite_micro=None))
    agent = BoardAgent(str(bundle_dir), load_runtime("tflite_micro"), log=lambda text: None)
    assert agent.model is not None and agent.model.interpreter.arena_bytes >= FALLBACK_ARENA
    _edit_manifest(bundle_dir, lambda m: m.update(arena_tflite_micro={"bytes": "big"}))
    with pytest.raises(BundleError, match="arena_tflite_micro.bytes must be a positive integer"):
        read_bundle(bundle_dir)
    with pytest.raises(RuntimeUnavailable, match="--kernels reference applies to the LiteRT"):
        load_runtime("tflite_micro").make_interpreter(
            str(bundle_dir / "model.tflite"), kernels="reference"
        )


def test_hil_with_a_tflite_micro_board_reports_lsb_and_sdr_and_judges_by_sdr(tmp_path):
    from tinysep.data.synth import write_corpus

    corpus = tmp_path / "data"
    write_corpus(corpus, songs=1, seconds=3.0, seed=5, progress=False)
    bundle, model = make_bundle(float_model=True)
    folder = tmp_path / "report"
    argv = ["hil", "--emulate", "--board-runtime", "tflite_micro", "--bundle", str(bundle),
            "--float", str(model), "--data", str(corpus), "--split", "all", "--max-clips", "1",
            "--plots", "0", "--report", str(folder), "--no-progress"]
    assert main(argv) == 0
    report = json.loads((folder / "hil.json").read_text())
    board = report["board"]
    assert board["runtime"].startswith("tflite_micro ") and board["host_runtime"].startswith(
        "ai_edge_litert")
    assert board["exact_expected"] is False and "TFLite Micro's kernels" in board["exact_reason"]
    summary = report["summary"]
    assert summary["clips_ok"] == 1 and report["passed"]
    assert 0 < summary["lsb"]["max_abs"] and summary["lsb"]["differing_samples"] > 0
    assert 0 < report["tensor_check"]["max_abs_diff"] <= MASK_LSB
    for source, difference in summary["board_vs_host_sdr"].items():
        clip = report["clips"][0]["scores"]
        assert difference == pytest.approx(
            clip["int8_board"][source]["sdr"] - clip["int8_host"][source]["sdr"])
        assert abs(difference) < SDR_DIFFERENCE_DB
    checks = dict((c["name"], c) for c in report["checks"])
    for name in ("board_vs_host_int8_lsb", "tensor_mode_bit_exact"):
        assert checks[name]["passed"] is None and "TFLite Micro" in checks[name]["text"]
    assert checks["sdr_drop_vocals"]["passed"] and checks["sdr_drop_accompaniment"]["passed"]
    markdown = (folder / "hil.md").read_text()
    assert "bit-exact expected: no (the board runs TFLite Micro's kernels" in markdown
    assert "SDR board - host vocals" in markdown
    suite = ET.parse(folder / "hil.junit.xml").getroot()
    assert suite.get("failures") == "0" and suite.get("skipped") == "2"

    # an explicit --max-lsb still applies: this board is not bit-exact
    report["settings"]["max_lsb"] = 0
    finalize(report)
    assert not report["passed"]
    assert [c["name"] for c in report["checks"] if c["passed"] is False] == [
        "board_vs_host_int8_lsb", "tensor_mode_bit_exact"]
