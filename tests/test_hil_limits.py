"""The harness sizes its requests to what the board announces, on real pseudo-terminals.

A microcontroller-class board (the ``cortex-m`` emulated profile: 1 KiB messages, a window of
one message, TensorFlow Lite Micro) must get every clip streamed, one hop per message; a board
whose messages cannot carry the model's tensors, or whose INFO does not list tensor mode, gets
the tensor check reported as skipped with the reason, never a silent pass and never a request
it cannot take.
"""

from __future__ import annotations

import json

import pytest
from board_bundle import make_bundle
from board_support import ThreadAgent
from test_link_support import fast_host_config

from cli.main import main
from firmware_host.protocol.messages import (
    CAP_AUDIO,
    CAP_UPLOAD,
    ErrorCode,
    ErrorReply,
    MessageType,
)
from hil.emulator import BOARD_PROFILES, EmulatedBoard
from hil.harness import HilSettings, run_hil
from hil.session import (
    AUDIO_CHUNK_HEAD,
    SEPARATED_CHUNK_HEAD,
    BoardSession,
    HilError,
    fitting_chunk_hops,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from tinysep.data.synth import write_corpus

    root = tmp_path_factory.mktemp("limits-data")
    write_corpus(root, songs=2, seconds=2.0, seed=4, progress=False)
    return root


def test_chunks_shrink_to_the_whole_hops_that_fit_both_directions():
    # one hop of 128 samples: 264 bytes in, 526 bytes back for two sources
    assert AUDIO_CHUNK_HEAD + 2 * 128 == 264 and SEPARATED_CHUNK_HEAD + 4 * 128 == 526
    assert fitting_chunk_hops(8, 128, 2, 1024) == 1
    assert fitting_chunk_hops(8, 128, 2, 2048) == 3  # (2048 - 14) // 512: the reply decides
    assert fitting_chunk_hops(8, 128, 2, 1 << 20) == 8  # never more than asked
    # not even one hop back: the board replies in parts, the request alone bounds the chunk
    assert fitting_chunk_hops(8, 128, 2, 525) == 2
    assert fitting_chunk_hops(8, 128, 4, 1024) == 3  # four sources on a 1 KiB board
    assert fitting_chunk_hops(8, 128, 2, 263) == 0  # not even one hop of request


def _board(bundle, capabilities=None, **limits) -> ThreadAgent:
    """A real agent behind a real pseudo-terminal with chosen HELLO limits and INFO capabilities;
    a board without tensor mode answers TENSOR_IN with UNKNOWN_TYPE, like a minimal firmware."""

    def adapt(agent) -> None:
        if capabilities is None:
            return
        plain_info, plain_handle = agent.info, agent.handle

        def info():
            reply = plain_info()
            reply.capabilities = capabilities
            return reply

        def handle(msg_type, payload):
            if msg_type == MessageType.TENSOR_IN:
                return ErrorReply(ErrorCode.UNKNOWN_TYPE, "not implemented", msg_type)
            return plain_handle(msg_type, payload)

        agent.info, agent.handle = info, handle

    return ThreadAgent(bundle, limits=limits, adapt=adapt)


def _run(board, bundle, model, corpus, folder) -> dict:
    settings = HilSettings(bundle=str(bundle), float_model=str(model), data=str(corpus),
                           report_dir=str(folder), split="all", max_clips=1, plots=0,
                           progress=False, tensor_invokes=2)
    session = BoardSession(port=board.path, config=fast_host_config(), reply_timeout=5.0)
    with session:
        return run_hil(session, settings, {"port": board.path})


def test_a_board_holding_one_hop_per_message_streams_every_clip(corpus, tmp_path):
    # 700 bytes: one hop of audio fits (526 back), the test model's TENSOR_OUT (774) does not
    bundle, model = make_bundle(float_model=True)
    board = _board(bundle, max_payload=700, max_message=700, window=1)
    try:
        report = _run(board, bundle, model, corpus, tmp_path)
    finally:
        board.stop()
    assert report["status"] == "finished", report["error"]
    assert report["board"]["limits"] == {"max_payload": 700, "max_message": 700, "window": 1,
                                         "capabilities": ["audio", "tensor", "upload"]}
    assert report["settings"]["chunk_hops_used"] == 1
    assert "8 hops per chunk asked, 1 fit" in report["settings"]["chunk_note"]
    clip = report["clips"][0]
    assert clip["status"] == "ok" and clip["stream"]["chunks"] >= 2.0 * 16000 / 128
    assert report["summary"]["lsb"]["max_abs"] == 0  # same runtime: bit-exact, hop by hop
    tensor = report["tensor_check"]
    assert tensor["skipped"] and "TENSOR_OUT 774; the board holds messages of at most 700 bytes" \
        in tensor["reason"]
    check = next(c for c in report["checks"] if c["name"] == "tensor_mode_bit_exact")
    assert check["passed"] is None and check["text"].startswith("tensor mode not supported")
    assert report["passed"]
    assert "tensor mode: skipped" in (tmp_path / "hil.md").read_text()


def test_a_board_without_tensor_mode_is_never_sent_a_tensor(corpus, tmp_path):
    bundle, model = make_bundle(float_model=True)
    board = _board(bundle, capabilities=CAP_AUDIO | CAP_UPLOAD)
    try:
        report = _run(board, bundle, model, corpus, tmp_path)
    finally:
        board.stop()
    assert report["status"] == "finished", report["error"]
    assert report["tensor_check"]["skipped"]
    assert "does not list tensor mode (capabilities: audio, upload)" in report["tensor_check"][
        "reason"]
    assert report["summary"]["clips_ok"] == 1 and report["passed"]


def test_a_board_that_cannot_hold_one_hop_is_refused_with_the_sizes(corpus, tmp_path):
    bundle = make_bundle()
    board = _board(bundle, max_payload=256, max_message=256, window=1)
    try:
        with BoardSession(port=board.path, config=fast_host_config()) as session:
            from firmware_host.bundle import read_bundle

            session.connect()
            session.check(read_bundle(bundle))
            with pytest.raises(HilError, match="at most 256 bytes, one hop .* needs 264"):
                session.chunk_hops(8)
    finally:
        board.stop()


def test_hil_on_the_emulated_cortex_m_board_passes_end_to_end(corpus, tmp_path):
    bundle, model = make_bundle(float_model=True)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in bundle.iterdir())
    argv = ["hil", "--emulate", "--board-profile", "cortex-m", "--bundle", str(bundle),
            "--float", str(model), "--data", str(corpus), "--split", "all", "--plots", "0",
            "--report", str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    report = json.loads((tmp_path / "hil.json").read_text())
    profile = BOARD_PROFILES["cortex-m"]
    assert report["board"]["profile"] == "cortex-m"
    assert report["board"]["runtime"].startswith("tflite_micro")
    assert report["board"]["limits"]["max_message"] == profile.max_message == 1024
    assert report["board"]["limits"]["window"] == 1
    assert report["settings"]["chunk_hops_used"] == 1
    assert report["summary"]["clips_ok"] == report["clips_planned"] == 2
    # the test model's tensors fit 1 KiB (509 bytes in, 774 out): checked, not bit-exact
    assert not report["tensor_check"]["skipped"] and report["tensor_check"]["invokes"] == 8
    assert report["tensor_check"]["max_abs_diff"] <= 6
    for source, drop in report["summary"]["drop"]["int8_board"].items():
        assert abs(drop) < 0.5, source
    assert sorted((p.name, p.stat().st_mtime_ns) for p in bundle.iterdir()) == before


def test_emulated_board_serves_a_private_copy(tmp_path):
    bundle = make_bundle()
    with EmulatedBoard(bundle, start=False) as board:
        assert board.bundle != board.source_bundle == bundle.resolve()
        model = (bundle / "model.tflite").read_bytes()
        assert (board.bundle / "model.tflite").read_bytes() == model
        copy = board.workdir
    assert not copy.exists()
