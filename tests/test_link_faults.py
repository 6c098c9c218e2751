"""The link under faults, on real pseudo-terminals joined by a relay that damages frames.

Every test checks that each message reaches the other application exactly once and in order,
and that the recovery really happened (resends, NAKs, duplicates or restarts counted).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from test_link_support import EchoBoard, expected_sources, fast_board_config, fast_host_config

from firmware_host.protocol.errors import LinkError, LinkTimeout, PeerRestarted
from firmware_host.protocol.link import DEFAULT_MAX_RETRIES, Link
from firmware_host.protocol.messages import AudioChunk, Ping
from firmware_host.transport import open_port
from hil.client import BoardClient
from hil.emulator import PtyPair
from hil.faults import FAULT_KINDS, FaultPlan, PtyRelay

RNG = np.random.default_rng(11)


def audio_chunks(count: int, size: int = 1024) -> list:
    return [
        AudioChunk(i * size, RNG.integers(-32768, 32768, size, dtype=np.int16))
        for i in range(count)
    ]


def run_pings(client: BoardClient, count: int) -> list:
    payloads = [
        bytes(RNG.integers(0, 256, int(RNG.integers(0, 3000)), dtype=np.uint8))
        for _ in range(count)
    ]
    for nonce, payload in enumerate(payloads):
        client.link.send(Ping(nonce, payload))
        reply = client.link.receive(5.0)
        assert (reply.nonce, reply.data) == (nonce, payload)
    return payloads


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_kind_is_recovered_exactly_once_in_order(kind):
    plan = dict(
        kinds=(kind,), every=3, skip_first=1, max_faults=3, stall_seconds=0.05, data_only=True
    )
    with PtyRelay(to_board=FaultPlan(seed=1, **plan), to_host=FaultPlan(seed=2, **plan)) as relay:
        board = EchoBoard(relay.board_stream())
        host = Link(open_port(relay.host_path), fast_host_config(), name="host")
        try:
            client = BoardClient(host, timeout=5.0)
            client.connect(timeout=2.0)
            payloads = run_pings(client, 12)
        finally:
            host.close(close_stream=True)
            board.stop()
    assert [(m.nonce, m.data) for m in board.received[1:]] == list(enumerate(payloads))
    assert relay.to_board.faults == {kind: 3} and relay.to_host.faults == {kind: 3}
    host_stats, board_stats = host.stats, board.link.stats
    resends = host_stats.resends + board_stats.resends
    decode_errors = host_stats.decode_errors + board_stats.decode_errors
    if kind in ("corrupt", "drop", "truncate", "garbage"):  # 6 data frames spoilt: all resent
        assert decode_errors >= 6 and resends >= 6
    if kind == "lose":
        assert resends >= 6 and host_stats.timeouts + board_stats.timeouts >= 1
    if kind == "duplicate":
        assert host_stats.duplicates + board_stats.duplicates == 6


PERIODIC_FAULTS = [("corrupt", 2), ("corrupt", 3), ("corrupt", 5), ("drop", 4), ("lose", 4)]


@pytest.mark.parametrize(
    ("kind", "every"), PERIODIC_FAULTS, ids=[f"{kind}-every-{n}" for kind, n in PERIODIC_FAULTS]
)
def test_periodic_faults_cannot_line_up_with_resends_and_everything_arrives_once(kind, every):
    # Every Nth data frame is damaged in both directions, resends included, for the whole run,
    # with a full window of requests in flight. A resend burst of a fixed length would meet the
    # period at the same place each time; the link resends the oldest frame alone first, so a
    # fixed period cannot spoil every attempt, and the default retry limit is never reached.
    plan = dict(kinds=(kind,), every=every, data_only=True)
    with PtyRelay(to_board=FaultPlan(seed=5, **plan), to_host=FaultPlan(seed=6, **plan)) as relay:
        board = EchoBoard(relay.board_stream(), fast_board_config(max_retries=DEFAULT_MAX_RETRIES))
        host = Link(
            relay.host_stream(), fast_host_config(max_retries=DEFAULT_MAX_RETRIES), name="host"
        )
        try:
            host.connect(timeout=2.0)
            sent, replies = [], []
            for _ in range(4):  # batches of 8 requests: the board's whole window in flight
                batch = [Ping(len(sent) + i, RNG.bytes(1000)) for i in range(8)]
                for ping in batch:
                    host.send(ping, timeout=5.0)
                sent += batch
                replies += [host.receive(5.0) for _ in batch]
        finally:
            host.close()
            board.stop()
    expected = [(ping.nonce, ping.data) for ping in sent]
    assert [(m.nonce, m.data) for m in board.received] == expected  # each request once, in order
    assert [(r.nonce, r.data) for r in replies] == expected
    assert board.errors == []
    data_frames = len(sent)  # first transmissions alone, per direction (one frame per message)
    assert relay.to_board.faults[kind] >= data_frames // every
    assert relay.to_host.faults[kind] >= data_frames // every
    assert host.stats.resends >= data_frames // every
    assert board.link.stats.resends >= data_frames // every


def test_streaming_survives_random_mixed_faults_without_losing_or_repeating_a_chunk():
    plan = dict(rate=0.2, skip_first=2, max_faults=12)  # ~11 drawn per direction: the cap binds
    with PtyRelay(to_board=FaultPlan(seed=3, **plan), to_host=FaultPlan(seed=4, **plan)) as relay:
        board = EchoBoard(relay.board_stream())
        host = Link(relay.host_stream(), fast_host_config(), name="host")
        try:
            client = BoardClient(host, timeout=5.0)
            client.connect(timeout=2.0)
            client.reset_state()
            chunks = audio_chunks(40)
            replies = list(client.stream(chunks, max_outstanding=4))
        finally:
            host.close()
            board.stop()
    assert [r.position for r in replies] == [c.position for c in chunks]
    for chunk, reply in zip(chunks, replies, strict=True):
        np.testing.assert_array_equal(reply.sources, expected_sources(chunk))
    audio_in = [m.position for m in board.received if isinstance(m, AudioChunk)]
    assert audio_in == [c.position for c in chunks]  # each chunk reached the board once
    assert relay.to_board.total_faults + relay.to_host.total_faults >= 12
    assert host.stats.resends + board.link.stats.resends >= 1


def test_a_board_restart_mid_stream_is_detected_and_the_stream_resumes_cleanly():
    with PtyPair() as pair:
        board = EchoBoard(pair.master_stream())
        host = Link(open_port(pair.slave_path), fast_host_config(), name="host")
        client = BoardClient(host, timeout=5.0)
        try:
            client.connect(timeout=2.0)
            client.reset_state()
            chunks = audio_chunks(24)
            stream = client.stream(chunks, max_outstanding=4)
            first = [next(stream) for _ in range(8)]  # four more chunks are in flight now
            board.stop()  # the board dies with requests in flight ...
            board = EchoBoard(pair.master_stream(), announce=True)  # ... and comes back
            with pytest.raises(PeerRestarted):
                list(stream)
            # The harness's recovery: new session, reset the stream state, stream the clip again.
            client.connect(timeout=2.0)
            client.reset_state()
            replies = list(client.stream(chunks))
        finally:
            host.close(close_stream=True)
            board.stop()
    assert [r.position for r in first] == [c.position for c in chunks[:8]]
    assert [r.position for r in replies] == [c.position for c in chunks]
    audio_in = [m.position for m in board.received if isinstance(m, AudioChunk)]
    assert audio_in == [c.position for c in chunks]  # the new board saw each chunk exactly once
    assert host.stats.peer_restarts == 1


def test_a_host_restart_resets_the_board_session_once():
    with PtyPair() as pair:
        board = EchoBoard(pair.master_stream())
        first = Link(open_port(pair.slave_path), fast_host_config(), name="host-1")
        try:
            BoardClient(first, timeout=5.0).connect(timeout=2.0)
            for nonce in range(3):
                first.send(Ping(nonce))  # the host dies with replies unread
            time.sleep(0.05)
            first.close(close_stream=True)
            second = Link(open_port(pair.slave_path), fast_host_config(), name="host-2")
            client = BoardClient(second, timeout=5.0)
            client.connect(timeout=2.0)
            client.reset_state()
            chunks = audio_chunks(6)
            replies = list(client.stream(chunks))
            second.close(close_stream=True)
        finally:
            board.stop()
    assert [r.position for r in replies] == [c.position for c in chunks]
    assert board.restarts == 1


def test_a_long_line_stall_is_ridden_out_by_retransmission():
    stall = FaultPlan(kinds=("stall",), every=6, skip_first=2, max_faults=1, stall_seconds=0.2)
    with PtyRelay(to_board=stall) as relay:
        board = EchoBoard(relay.board_stream())
        host = Link(relay.host_stream(), fast_host_config(), name="host")
        try:
            client = BoardClient(host, timeout=5.0)
            client.connect(timeout=2.0)
            payloads = run_pings(client, 6)
        finally:
            host.close()
            board.stop()
    assert [m.data for m in board.received[1:]] == payloads
    assert host.stats.timeouts >= 1 and board.link.stats.duplicates >= 1


def test_a_dead_board_gives_a_timeout_naming_the_unacknowledged_frame():
    with PtyPair() as pair:
        board = EchoBoard(pair.master_stream())
        host = Link(
            pair.slave_stream(), fast_host_config(ack_timeout=0.03, max_retries=3), name="host"
        )
        try:
            BoardClient(host).connect(timeout=2.0)
            board.stop()
            start = time.monotonic()
            host.send(Ping(1))
            with pytest.raises(LinkTimeout) as failure:
                host.receive(timeout=2.0)
            elapsed = time.monotonic() - start
            with pytest.raises(LinkError, match="no session"):
                host.send(Ping(2))  # the session is gone until connect() succeeds again
        finally:
            host.close()
    assert "ACK of seq 1 (PING)" in str(failure.value) and "3 retransmissions" in str(failure.value)
    assert elapsed < 1.0
    assert host.stats.resends == 3


def test_a_peer_that_stops_reading_fails_the_link_in_its_give_up_time_not_the_reply_timeout():
    config = fast_host_config(ack_timeout=0.05, max_retries=4)
    with PtyPair() as pair:
        board = EchoBoard(pair.master_stream())
        host = Link(open_port(pair.slave_path), config, name="host")
        try:
            host.connect(timeout=2.0)
            board.stop()  # nothing reads the board's end any more: its pty fills up
            start = time.monotonic()
            for nonce in range(8):  # 64 KB, far more than a pty buffers: the host's writes stall
                host.send(Ping(nonce, RNG.bytes(8000)), timeout=5.0)
            with pytest.raises(LinkTimeout) as failure:
                host.flush(timeout=5.0)  # the application would wait 5 s
            elapsed = time.monotonic() - start
        finally:
            host.close(close_stream=True)
    text = str(failure.value)
    assert "waiting for the peer to read the line and send an ACK of seq 0 (PING)" in text
    assert "the line has taken no bytes for" in text and "the peer stopped reading" in text
    assert "4 retransmission timeouts with the line full" in text
    give_up = config.give_up_time(8192)  # 0.05 s, then 4 x 0.1 s of backed-off timeouts
    assert give_up * 0.9 <= elapsed <= give_up + 0.5
    assert failure.value.waiting_for.startswith("the peer to read")


def test_a_hung_board_application_gives_a_reply_timeout():
    with PtyPair() as pair:
        board = EchoBoard(pair.master_stream(), fast_board_config(), paused=True)
        host = Link(pair.slave_stream(), fast_host_config(), name="host")
        try:
            host.connect(timeout=2.0)
            client = BoardClient(host, timeout=0.15)
            with pytest.raises(LinkTimeout, match="waiting for a message from the peer"):
                client.ping()
            board.paused.clear()
            assert host.receive(2.0).TYPE == Ping.TYPE + 1  # the late PONG still arrives, once
        finally:
            host.close()
            board.stop()
