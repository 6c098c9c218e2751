"""The harness against a misbehaving line or board, on real pseudo-terminals (and over TCP).

The agent runs in a subprocess. Line faults come from the protocol's fault relay between the
host's and the board's pseudo-terminals; board faults are real: the agent process is killed
and restarted, or frozen with SIGSTOP. Every recovered run must give exactly the output of a
clean run (the same streaming pipeline on the host), so no audio frame was lost or duplicated.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time

import numpy as np
import pytest
from board_bundle import copy_bundle, make_bundle
from board_support import FAST_AGENT_ARGS, ThreadAgent, test_signal
from test_link_support import fast_host_config

from firmware_host.bundle import read_bundle
from firmware_host.protocol.errors import LinkTimeout, PeerRestarted
from firmware_host.transport import FdStream
from hil.emulator import EmulatedBoard
from hil.faults import FAULT_KINDS, FaultPlan, PtyRelay
from hil.reference import HostPipeline
from hil.session import BoardSession, HilError

CHUNK_HOPS = 8


@pytest.fixture(scope="module")
def clean():
    """The bundle, a test clip and its clean separated output."""
    bundle = read_bundle(make_bundle())
    pcm = test_signal(2.0, seed=5)
    return bundle, pcm, HostPipeline(bundle).stream(pcm, CHUNK_HOPS * bundle.hop)


def _session(path: str, **options) -> BoardSession:
    config = fast_host_config(max_retries=options.pop("max_retries", 30))
    return BoardSession(port=path, config=config, reply_timeout=options.pop("reply_timeout", 5.0),
                        connect_timeout=options.pop("connect_timeout", 10.0), **options)


def _connected(session: BoardSession, bundle) -> BoardSession:
    session.connect()
    session.check(bundle)
    return session


@pytest.mark.parametrize("kinds", [("corrupt",), ("drop",), ("truncate",), FAULT_KINDS],
                         ids=["corrupt", "drop", "truncate", "all-kinds"])
def test_damaged_frames_are_recovered_without_losing_or_repeating_audio(clean, kinds):
    bundle, pcm, expected = clean
    # every 4th data frame in each direction is damaged, resends included, for the whole clip
    plan = dict(kinds=kinds, every=4, skip_first=2, data_only=True, stall_seconds=0.05)
    with PtyRelay(FaultPlan(seed=1, **plan), FaultPlan(seed=2, **plan)) as relay:
        with EmulatedBoard(bundle.folder, port=relay.board_path, extra_args=FAST_AGENT_ARGS):
            with _session(relay.host_path) as session:
                result = _connected(session, bundle).stream_clip(pcm, CHUNK_HOPS)
        assert relay.to_board.total_faults > 0 and relay.to_host.total_faults > 0
    assert np.array_equal(result.sources, expected)
    assert result.recoveries == []
    link = result.link
    assert link["resends"] + link["naks_received"] + link["duplicates"] > 0
    if "corrupt" in kinds or "truncate" in kinds:
        assert link["decode_errors"] > 0


def test_a_board_restart_mid_stream_replays_the_clip(clean):
    bundle, pcm, expected = clean
    with EmulatedBoard(bundle.folder, extra_args=FAST_AGENT_ARGS) as board:
        restarted = []

        def progress(returned: int) -> None:
            if returned >= pcm.size // 2 and not restarted:
                restarted.append(returned)
                board.restart()

        with _session(board.path) as session:
            result = _connected(session, bundle).stream_clip(pcm, CHUNK_HOPS, progress)
            after = session.info
        assert board.starts == 2
    assert restarted and len(result.recoveries) == 1
    assert result.resumed_from[0] > 0  # resumed near where it stopped, not from position 0
    assert np.array_equal(result.sources, expected)
    assert after.model_sha256.hex() == bundle.model_sha256  # checked again after the restart


def test_a_briefly_stalled_board_is_waited_for(clean):
    bundle, pcm, expected = clean
    with EmulatedBoard(bundle.folder, extra_args=FAST_AGENT_ARGS) as board:
        paused = []

        def progress(returned: int) -> None:
            if returned >= pcm.size // 3 and not paused:
                paused.append(time.monotonic())
                board.pause()
                threading.Timer(0.5, board.resume).start()

        with _session(board.path) as session:
            result = _connected(session, bundle).stream_clip(pcm, CHUNK_HOPS, progress)
    assert paused and result.wall_seconds > 0.5  # the host really waited for the board
    assert result.recoveries == []  # ... without giving up on the clip
    assert np.array_equal(result.sources, expected)


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_board_that_stays_stalled_stops_the_harness_with_a_clear_error(clean):
    bundle, pcm, _ = clean
    with EmulatedBoard(bundle.folder, extra_args=FAST_AGENT_ARGS) as board:

        def progress(returned: int) -> None:
            if returned >= 2048:
                board.pause()

        with _session(board.path, max_retries=5, connect_timeout=1.0,
                      reply_timeout=2.0) as session:
            _connected(session, bundle)
            start = time.monotonic()
            with pytest.raises(HilError, match="stopped answering and did not come back"):
                session.stream_clip(pcm, CHUNK_HOPS, progress)
            assert time.monotonic() - start < 10.0


def test_upload_over_a_damaged_line_and_a_restart_mid_upload(tmp_path):
    bundle_dir = copy_bundle(make_bundle(), tmp_path / "bundle")
    before = (bundle_dir / "model.tflite").read_bytes()
    listing = sorted(p.name for p in bundle_dir.iterdir())
    new_model = (make_bundle(seed=8) / "model.tflite").read_bytes()
    plan = dict(kinds=("corrupt", "drop", "lose"), rate=0.15, max_faults=8, skip_first=2,
                data_only=True)
    with PtyRelay(FaultPlan(seed=3, **plan), FaultPlan(seed=4, **plan)) as relay:
        with EmulatedBoard(bundle_dir, port=relay.board_path, extra_args=FAST_AGENT_ARGS) as board:
            with _session(relay.host_path) as session:
                session.connect()
                sent = []

                def progress(count: int) -> None:
                    sent.append(count)
                    if len(sent) == 2:
                        board.restart()  # power loss in the middle of the upload

                flash = board.bundle  # the emulated board's own copy of the bundle
                with pytest.raises((PeerRestarted, LinkTimeout)):
                    session.client.upload(new_model, chunk_size=1024, progress=progress)
                assert (flash / "model.tflite").read_bytes() == before
                session.reconnect()
                assert session.info.model_sha256 == hashlib.sha256(before).digest()
                done = session.upload(new_model)
                assert relay.to_board.total_faults > 0
                assert (flash / "model.tflite").read_bytes() == new_model
                assert sorted(p.name for p in flash.iterdir()) == listing  # no partial files
                assert read_bundle(flash).model_sha256 == hashlib.sha256(new_model).hexdigest()
    assert done.sha256 == hashlib.sha256(new_model).digest()
    assert (bundle_dir / "model.tflite").read_bytes() == before  # the user's folder: untouched


def test_a_board_behind_a_tcp_serial_server_streams_through_a_socket_url(clean):
    bundle, pcm, expected = clean
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    accepted = {}
    waiter = threading.Thread(target=lambda: accepted.setdefault("conn", server.accept()[0]),
                              daemon=True)
    waiter.start()
    url = f"socket://127.0.0.1:{server.getsockname()[1]}"
    session = _session(url)  # pyserial's socket:// URL, as for a board behind ser2net
    waiter.join(timeout=5.0)
    conn = accepted["conn"]
    try:
        with ThreadAgent(bundle.folder, stream=FdStream(conn.fileno(), close_fd=False)):
            with session:
                result = _connected(session, bundle).stream_clip(pcm, CHUNK_HOPS)
    finally:
        conn.close()
        server.close()
    assert np.array_equal(result.sources, expected)


def test_a_slow_line_raises_the_reply_timeout_to_the_links_give_up_time(clean):
    # At 115200 baud the link keeps resending for ~41 s before it gives up; a reply timeout
    # shorter than that would take a slow line for a stalled board.
    bundle = clean[0]
    with EmulatedBoard(bundle.folder, extra_args=FAST_AGENT_ARGS) as board:
        with BoardSession(port=board.path, baud=115200, reply_timeout=10.0) as session:
            session.connect()
            give_up = session.link.config.give_up_time(session.link.peer.max_payload)
            assert give_up > 30.0
            assert session.client.timeout == pytest.approx(give_up)
        with BoardSession(port=board.path, reply_timeout=10.0) as fast:
            fast.connect()  # on a fast line the link gives up sooner: the option stands
            assert fast.link.config.give_up_time(fast.link.peer.max_payload) < 10.0
            assert fast.client.timeout == 10.0


def test_bit_exactness_is_expected_only_from_the_same_runtime_version(clean):
    from hil.reference import exactness_expected

    host = HostPipeline(clean[0])
    same = host.runtime.label
    assert exactness_expected(same, "cpu", host)[0]
    assert exactness_expected(same, "cpu-reference", host)[0]
    # reference kernels of another version: int8 FULLY_CONNECTED may round a tie apart
    expected, why = exactness_expected("tflite_runtime 2.11.0", "cpu-reference", host)
    assert not expected and "FULLY_CONNECTED" in why
    assert not exactness_expected("tflite_runtime 2.11.0", "cpu", host)[0]
    assert not exactness_expected(same, "edgetpu", host)[0]
    assert not exactness_expected("tflite_micro 0.dev", "cpu", host)[0]
