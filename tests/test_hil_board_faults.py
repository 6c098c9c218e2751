"""The harness against a hostile or unlucky board, on real pseudo-terminals.

A board that sends a malformed reply or an impossible HELLO ends ``tinysep hil`` with the
board-fault exit status and a report whose status, fault and error say what happened (never
left at "running"); a restart or a stall while INFO is read, during the tensor check or during
an upload is recovered like one during streaming; the counters of a stopped run agree with
its error; and a mix of line faults, board restarts and long stalls at 3 % of frames is
survived with output identical to a clean run.
"""

from __future__ import annotations

import json
import random
import re
import struct
import threading
import time

import numpy as np
import pytest
from board_bundle import make_bundle
from board_support import FAST_AGENT_ARGS, ThreadAgent, test_signal
from test_link_support import fast_host_config

from cli.hil_run import BOARD_FAULT_EXIT
from cli.main import main
from firmware_host.bundle import read_bundle
from firmware_host.protocol.cobs import CobsError, cobs_decode
from firmware_host.protocol.framing import Frame, FrameDecoder, encode_frame
from firmware_host.protocol.messages import Hello, Message, MessageType
from hil.emulator import EmulatedBoard, PtyPair
from hil.faults import FAULT_KINDS, FaultPlan, PtyRelay
from hil.harness import HilSettings, run_hil
from hil.reference import HostPipeline
from hil.session import BoardSession, HilError, RecoveryBudget


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from tinysep.data.synth import write_corpus

    root = tmp_path_factory.mktemp("faults-data")
    write_corpus(root, songs=1, seconds=2.0, seed=6, progress=False)
    return root


class _RawTensorOut(Message):
    """A TENSOR_OUT whose one tensor record claims 65 dimensions."""

    TYPE = MessageType.TENSOR_OUT

    def encode(self) -> bytes:
        return (struct.pack("<I", 0) + bytes([1, 0, 0, 0]) + bytes([0, 1, 65, 0])
                + struct.pack("<65I", *([1] * 65)) + b"\x00")


def _hostile_agent_board(bundle) -> ThreadAgent:
    """The real agent on a real pseudo-terminal, answering every TENSOR_IN with a crafted
    TENSOR_OUT."""

    def adapt(agent) -> None:
        plain = agent.handle
        agent.handle = lambda t, p: _RawTensorOut() if t == MessageType.TENSOR_IN else plain(t, p)

    return ThreadAgent(bundle, adapt=adapt)


def _hil_argv(path, bundle, model, corpus, folder) -> list:
    return ["hil", "--port", path, "--bundle", str(bundle), "--float", str(model), "--data",
            str(corpus), "--split", "all", "--plots", "0", "--report", str(folder),
            "--no-progress", "--timeout", "3", "--connect-timeout", "2"]


def test_a_malformed_tensor_out_ends_with_the_board_fault_status(corpus, tmp_path, capsys):
    bundle, model = make_bundle(float_model=True)
    board = _hostile_agent_board(bundle)
    try:
        status = main(_hil_argv(board.path, bundle, model, corpus, tmp_path))
    finally:
        board.stop()
    assert status == BOARD_FAULT_EXIT == 3
    report = json.loads((tmp_path / "hil.json").read_text())
    assert report["status"] == "aborted" and report["fault"] == "board" and not report["passed"]
    assert "TENSOR_OUT" in report["error"] and "65 dimensions" in report["error"]
    assert report["finished"] is not None and report["session"]["link"]["frames_sent"] > 0
    assert "stopped:" in capsys.readouterr().out


def _bad_hello_board(pair, stop) -> None:
    """Answers every HELLO with one announcing max_payload = 0 (a hostile board)."""
    decoder = FrameDecoder(8192)
    stream = pair.master_stream()
    while not stop.is_set():
        data = stream.read(4096)
        for frame in decoder.feed(data or b""):
            if getattr(frame, "msg_type", None) != MessageType.HELLO:
                continue
            try:
                asked = Hello.decode(frame.payload)
            except Exception:  # noqa: BLE001 - a test board ignores what it cannot parse
                continue
            reply = Hello(0x1234, asked.session_id, 1, 0, 1 << 20, 8)
            stream.write(encode_frame(Frame(MessageType.HELLO, 0, 8, 0, 0, reply.encode())))


def test_a_hello_with_max_payload_zero_ends_with_the_board_fault_status(corpus, tmp_path):
    bundle, model = make_bundle(float_model=True)
    stop = threading.Event()
    with PtyPair() as pair:
        thread = threading.Thread(target=_bad_hello_board, args=(pair, stop), daemon=True)
        thread.start()
        try:
            status = main(_hil_argv(pair.slave_path, bundle, model, corpus, tmp_path))
        finally:
            stop.set()
            thread.join(timeout=5)
    assert status == BOARD_FAULT_EXIT
    report = json.loads((tmp_path / "hil.json").read_text())
    assert report["status"] == "aborted" and report["fault"] == "board"
    assert report["error"] and "HELLO" in report["error"]


def _message_type(segment: bytes):
    try:
        raw = cobs_decode(segment[:-1])
    except CobsError:
        return None
    return raw[1] if len(raw) > 1 else None


class _Trigger:
    """A relay tap that runs ``first`` (before the frame goes on) and then ``action`` (in a
    thread) on the ``nth`` host frame of a type."""

    def __init__(self, msg_type: int, action, nth: int = 1, first=None) -> None:
        self.msg_type = msg_type
        self.action = action
        self.first = first  # run in the relay before the frame is passed on
        self.nth = nth
        self.seen = 0
        self.fired = threading.Event()

    def __call__(self, direction: str, segment: bytes) -> None:
        if direction != "a->b" or _message_type(segment) != self.msg_type:
            return
        self.seen += 1
        if self.seen == self.nth:
            self.fired.set()
            if self.first is not None:
                self.first()
            threading.Thread(target=self.action, daemon=True).start()


def _settings(bundle, model, corpus, folder) -> HilSettings:
    return HilSettings(bundle=str(bundle), float_model=str(model), data=str(corpus),
                       report_dir=str(folder), split="all", plots=0, progress=False,
                       tensor_invokes=3)


def _session(path, **options) -> BoardSession:
    return BoardSession(port=path, config=fast_host_config(max_retries=20),
                        reply_timeout=options.pop("reply_timeout", 3.0),
                        connect_timeout=options.pop("connect_timeout", 15.0), **options)


@pytest.mark.parametrize("what", ["restart at GET_INFO", "restart in the tensor check",
                                  "stall at GET_INFO"])
def test_a_fault_before_streaming_is_recovered(corpus, tmp_path, what):
    bundle, model = make_bundle(float_model=True)
    msg_type = MessageType.GET_INFO if "GET_INFO" in what else MessageType.TENSOR_IN
    holder = {}

    def act() -> None:
        board = holder["board"]
        if what.startswith("restart"):
            board.restart()
        else:
            time.sleep(3.0)  # longer than the host link's give-up time (~2 s): a lost session
            board.resume()

    # a stall freezes the board before the request reaches it, so it cannot answer first
    first = (lambda: holder["board"].pause()) if what.startswith("stall") else None
    trigger = _Trigger(msg_type, act, nth=2 if msg_type == MessageType.TENSOR_IN else 1,
                       first=first)
    with PtyRelay(tap=trigger) as relay:
        with EmulatedBoard(bundle, port=relay.board_path, extra_args=FAST_AGENT_ARGS) as board:
            holder["board"] = board
            with _session(relay.host_path) as session:
                report = run_hil(session, _settings(bundle, model, corpus, tmp_path),
                                 {"port": relay.host_path})
    assert trigger.fired.is_set()
    assert report["status"] == "finished", report["error"]
    during = "INFO" if msg_type == MessageType.GET_INFO else "the tensor check"
    recoveries = report["summary"]["recoveries_by_request"]
    # A stalled board never saw the request, so that request recovers. A restart runs beside
    # the request: on a loaded machine the board may answer it first, and then the next
    # request meets the fresh board and recovers.
    assert sum(recoveries.values()) >= 1, recoveries
    if what.startswith("stall"):
        assert recoveries.get(during, 0) >= 1, recoveries
    assert report["tensor_check"]["invokes"] == 3 and report["tensor_check"]["max_abs_diff"] == 0
    assert report["summary"]["clips_ok"] == 1 and report["passed"]


def test_a_restart_mid_upload_is_recovered_by_the_session(tmp_path):
    board_dir = make_bundle()
    new_model = (make_bundle(seed=8) / "model.tflite").read_bytes()
    holder = {}
    trigger = _Trigger(MessageType.UPLOAD_CHUNK, lambda: holder["board"].restart(), nth=3)
    with PtyRelay(tap=trigger) as relay:
        with EmulatedBoard(board_dir, port=relay.board_path, extra_args=FAST_AGENT_ARGS) as board:
            holder["board"] = board
            with _session(relay.host_path) as session:
                session.connect()
                session.client.timeout = 3.0
                done = session.upload(new_model)
                assert session.info.model_size == len(new_model)
            assert (board.bundle / "model.tflite").read_bytes() == new_model
    assert trigger.fired.is_set() and done.size == len(new_model)
    assert [r["during"] for r in session.recoveries] == ["the upload"]


def test_a_stopped_run_reports_the_counters_its_error_speaks_of(corpus, tmp_path):
    bundle, model = make_bundle(float_model=True)
    with EmulatedBoard(bundle, extra_args=FAST_AGENT_ARGS) as board:
        trigger_at = []

        class Freezing(BoardSession):
            def stream_clip(self, pcm, chunk_hops=8, progress=None):
                def freeze(returned: int) -> None:
                    if returned >= 4096 and not trigger_at:
                        trigger_at.append(returned)
                        board.pause()

                return super().stream_clip(pcm, chunk_hops, freeze)

        session = Freezing(port=board.path, config=fast_host_config(max_retries=5),
                           reply_timeout=2.0, connect_timeout=1.0)
        with session:
            report = run_hil(session, _settings(bundle, model, corpus, tmp_path),
                             {"port": board.path})
        board.resume()
    assert report["status"] == "aborted" and report["fault"] == "board"
    assert "did not come back" in report["error"]
    on_disk = json.loads((tmp_path / "hil.json").read_text())
    link = on_disk["summary"]["link"]
    # the error quotes the link's own count ("sent 25 frames (4 resent)"): the summary agrees
    resent = re.search(r"sent \d+ frames \((\d+) resent\)", on_disk["error"])
    assert resent and int(resent.group(1)) == link["resends"]
    assert link == {k: on_disk["session"]["link"][k] for k in link}
    assert link["bytes_sent"] > 0 and on_disk["session"]["link"]["frames_sent"] > 0
    assert on_disk["summary"]["recoveries"] == 1 == len(on_disk["session"]["recoveries"])
    assert f"{link['resends']} frames resent" in (tmp_path / "hil.md").read_text()


def test_three_percent_faults_of_every_class_with_kills_and_stalls_are_survived():
    """Line faults (corrupt, drop, truncate, garbage, lose, duplicate, short stall) at 3 % of
    the data frames in each direction, and on the host's frames board kills and board stalls
    longer than the link's give-up time: the clip comes out exactly as on a clean run."""
    bundle = read_bundle(make_bundle())
    pcm = test_signal(2.0, seed=9)
    expected = HostPipeline(bundle).stream(pcm, 8 * bundle.hop)
    rate = 0.03
    line = dict(kinds=FAULT_KINDS, rate=rate * 7 / 9, skip_first=2, data_only=True,
                stall_seconds=0.2)
    rng = random.Random(11)
    holder = {"kills": 0, "stalls": 0, "busy": False}

    def board_fault(kind: str) -> None:
        board = holder["board"]
        if kind == "kill":
            holder["kills"] += 1
            board.restart()
        else:
            holder["stalls"] += 1
            board.pause()
            time.sleep(3.0)
            board.resume()
        holder["busy"] = False

    def tap(direction: str, segment: bytes) -> None:
        if direction != "a->b" or holder["busy"] or _message_type(segment) not in (
            MessageType.AUDIO_CHUNK, MessageType.RESET_STATE
        ):
            return
        if rng.random() < rate * 2 / 9 * 4:  # x4: enough kills and stalls in a 2 s clip
            holder["busy"] = True
            kind = "kill" if (holder["kills"] + holder["stalls"]) % 2 == 0 else "stall"
            threading.Thread(target=board_fault, args=(kind,), daemon=True).start()

    plans = (FaultPlan(seed=21, **line), FaultPlan(seed=22, **line))
    start = time.monotonic()
    with PtyRelay(*plans, tap=tap) as relay:
        with EmulatedBoard(bundle.folder, port=relay.board_path,
                           extra_args=FAST_AGENT_ARGS) as board:
            holder["board"] = board
            with _session(relay.host_path, budget=RecoveryBudget(12, 120.0)) as session:
                session.connect()
                session.check(bundle)
                result = session.stream_clip(pcm, 8)
        faults = relay.to_board.total_faults + relay.to_host.total_faults
    seconds = time.monotonic() - start
    assert np.array_equal(result.sources, expected)
    assert faults > 0 and holder["kills"] + holder["stalls"] >= 1
    assert len(result.recoveries) <= 12 and seconds < 120


def test_a_budget_of_zero_recoveries_gives_up_and_says_why(tmp_path):
    bundle = read_bundle(make_bundle())
    with EmulatedBoard(bundle.folder, extra_args=FAST_AGENT_ARGS) as board:
        with _session(board.path, budget=RecoveryBudget(0, 60.0)) as session:
            session.connect()
            session.check(bundle)

            def restart(returned: int) -> None:
                if returned == 1024:
                    board.restart()

            with pytest.raises(HilError, match=r"gave up on a clip after 0 recoveries .*budget"):
                session.stream_clip(test_signal(1.0), 8, restart)


@pytest.mark.parametrize("frames_per_invoke, chunk_hops", [(1, 8), (3, 5)])
def test_a_restart_resumes_the_clip_shortly_before_the_missing_chunk(frames_per_invoke,
                                                                     chunk_hops):
    """The board's state is rebuilt from the last few chunks (every state is a context ring
    buffer), so the resumed stream equals an uninterrupted one sample for sample."""
    bundle = read_bundle(make_bundle(frames_per_invoke=frames_per_invoke))
    pcm = test_signal(3.0, seed=12)
    chunk = chunk_hops * bundle.hop
    expected = HostPipeline(bundle).stream(pcm, chunk)
    with EmulatedBoard(bundle.folder, extra_args=FAST_AGENT_ARGS) as board:
        restarted = []

        def progress(returned: int) -> None:
            if returned >= 2 * pcm.size // 3 and not restarted:
                restarted.append(returned)
                board.restart()

        with _session(board.path) as session:
            session.connect()
            session.check(bundle)
            warm = session.resume_hops()
            result = session.stream_clip(pcm, chunk_hops, progress)
    assert np.array_equal(result.sources, expected)
    assert len(result.recoveries) == 1 and len(result.resumed_from) == 1
    resumed = result.resumed_from[0]
    assert resumed > 0 and (resumed // bundle.hop) % frames_per_invoke == 0
    # the chunks streamed again before the first missing one hold enough audio for the state
    assert result.warmup_chunks * chunk >= warm * bundle.hop > 0
    assert resumed + result.warmup_chunks * chunk >= restarted[0]
