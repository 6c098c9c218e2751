"""Exactly-once replies and a clean close, over real pseudo-terminals.

A reply is matched to its own request: when one of several pipelined audio chunks fails, the
replies to the chunks sent after it are read and dropped before the next request, so the next
clip's RESET_STATE reads its own OK. A host that closes its link acknowledges what it took, so
a board that follows the spec never resends its last reply into a closed port.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from test_link_support import EchoBoard, RawPeer, fast_board_config, fast_host_config

from firmware_host.protocol.errors import PeerError, ProtocolError, RequestRejected
from firmware_host.protocol.link import Link
from firmware_host.protocol.messages import (
    ROLE_BOARD,
    AudioChunk,
    ErrorCode,
    ErrorReply,
    Hello,
    Info,
    MessageType,
    Ok,
    ResetState,
)
from firmware_host.transport import open_port
from hil.client import BoardClient
from hil.emulator import PtyPair

HOP = 128
CHUNK = 1024


class FailingBoard(EchoBoard):
    """An EchoBoard whose invocation fails at one stream position (like INVOKE_FAILED on a
    board): the stream state is then lost, and later chunks get BAD_AUDIO until RESET_STATE."""

    def __init__(self, stream, fail_at: int) -> None:
        self.fail_at = fail_at
        self.lost = False
        super().__init__(stream)

    def answer(self, message):
        if isinstance(message, AudioChunk):
            if self.lost:
                raise RequestRejected(
                    ErrorCode.BAD_AUDIO,
                    f"position {message.position}, expected {self.position}: stream state lost",
                )
            if message.position == self.fail_at:
                self.fail_at = None  # once
                self.lost = True
                raise RequestRejected(ErrorCode.INVOKE_FAILED, "RuntimeError: invoke failed")
        reply = super().answer(message)
        if isinstance(message, ResetState):
            self.lost = False
        return reply


def _clip(seconds: float, seed: int) -> list:
    rng = np.random.default_rng(seed)
    pcm = rng.integers(-20000, 20000, int(seconds * 16000) // CHUNK * CHUNK).astype(np.int16)
    return [AudioChunk(i, pcm[i : i + CHUNK]) for i in range(0, pcm.size, CHUNK)]


@pytest.fixture
def failing_rig():
    pair = PtyPair()
    board = FailingBoard(pair.master_stream(), fail_at=CHUNK)
    host = Link(open_port(pair.slave_path), fast_host_config(), name="host")
    client = BoardClient(host, timeout=5.0)
    client.connect(timeout=5.0)
    yield board, client
    host.close()
    board.stop()
    pair.close()


def test_an_error_mid_stream_leaves_no_stale_reply_for_the_next_clip(failing_rig):
    board, client = failing_rig
    client.reset_state()
    first = _clip(0.6, seed=1)  # 9 chunks; the second fails, 4 are in flight at a time
    with pytest.raises(PeerError) as err:
        list(client.stream(first, max_outstanding=4))
    assert err.value.code == ErrorCode.INVOKE_FAILED
    assert err.value.request_type == MessageType.AUDIO_CHUNK
    # chunks 2048, 3072 and 4096 were in flight behind the failed one: their ERRORs are gone
    assert client.discarded == 3 and client.owed == 0
    client.reset_state()  # reads its own OK, not a leftover ERROR of the previous clip
    second = _clip(0.3, seed=2)
    replies = list(client.stream(second, max_outstanding=4))
    assert [r.position for r in replies] == [c.position for c in second]
    for chunk, reply in zip(second, replies, strict=True):
        assert np.array_equal(reply.sources[1], -chunk.samples)
    # the board answered every request exactly once: 2 resets + 5 + 4 chunks
    audio = [m for m in board.received if isinstance(m, AudioChunk)]
    assert [m.position for m in audio] == [0, 1024, 2048, 3072, 4096] + [c.position for c in second]


def test_a_reply_that_came_too_late_is_dropped_not_taken_for_the_next_one(failing_rig):
    board, client = failing_rig
    board.paused.set()  # the board application stalls: the request times out on the host
    time.sleep(0.2)  # (a receive already under way ends first)
    with pytest.raises(Exception, match="a message from the peer"):
        client.request(ResetState(), Ok, timeout=0.3)
    assert client.owed == 1
    board.paused.clear()
    client.ping(b"late")  # first drops the late OK, then reads its own PONG
    assert client.discarded == 1 and client.owed == 0


def test_an_error_for_another_request_type_is_reported_as_out_of_step(failing_rig):
    _, client = failing_rig
    with pytest.raises(ProtocolError, match="replies out of step"):
        client._expect(
            ErrorReply(ErrorCode.BAD_AUDIO, "x", MessageType.AUDIO_CHUNK),
            AudioChunk,
            int(MessageType.RESET_STATE),
        )


def test_closing_the_host_link_acknowledges_the_last_reply_first():
    pair = PtyPair()
    # an RTO well above the scheduling delays of a loaded machine: a resend means no ACK came
    board = EchoBoard(pair.master_stream(), fast_board_config(ack_timeout=0.2))
    unacknowledged = []
    try:
        for attempt in range(10):
            host = Link(open_port(pair.slave_path), fast_host_config(), name="host")
            client = BoardClient(host, timeout=5.0)
            client.connect(timeout=5.0)  # HELLO, GET_INFO -> INFO
            client.ping(b"x" * 300)
            before = board.link.stats
            host.close(close_stream=True)  # at once, like `tinysep flash` after UPLOAD_DONE
            time.sleep(2.5 * board.link.retransmit_timeout)  # the board's timer would fire
            after = board.link.stats
            if after.timeouts > before.timeouts or after.resends > before.resends:
                unacknowledged.append(attempt)
        assert not unacknowledged, f"the last reply was resent after attempts {unacknowledged}"
        assert board.link.connected
    finally:
        board.stop()
        pair.close()


def test_a_spec_following_board_sees_its_last_reply_acknowledged_when_the_host_closes():
    """The board side written by hand from the spec: it answers GET_INFO with a 2-fragment INFO
    and checks, frame by frame, that the closing host acknowledged both fragments."""
    pair = PtyPair()
    board = RawPeer(pair.master_stream())
    try:
        host = Link(open_port(pair.slave_path), fast_host_config(max_payload=1024), name="host")
        client = BoardClient(host, timeout=5.0)
        result = {}

        def connect():
            try:
                result["info"] = client.connect(timeout=5.0)
            except Exception as exc:  # reported by the assert below
                result["exc"] = exc

        thread = threading.Thread(target=connect)
        thread.start()
        request = Hello.decode(board.expect(MessageType.HELLO).payload)
        reply = Hello(0x0B0A4D00, request.session_id, ROLE_BOARD, 1024, 1024, 1)
        board.send(MessageType.HELLO, credit=1, payload=reply.encode())
        get_info = board.expect(MessageType.GET_INFO)
        info = Info(
            "spec-board 1", "tflm", "cpu", b"\x22" * 32, 4096, '{"k": "' + "v" * 1500 + '"}'
        )
        payload = info.encode()
        assert len(payload) > 1024  # two fragments for a host announcing 1024
        board.send(
            MessageType.INFO, seq=0, ack=get_info.seq + 1, credit=1, flags=1, payload=payload[:1024]
        )
        board.send(MessageType.INFO, seq=1, ack=get_info.seq + 1, credit=1, payload=payload[1024:])
        thread.join(5.0)
        assert result.get("info") == info, result
        host.close(close_stream=True)
        acks = [f.ack for f in board.silence(0.3) if f.msg_type == MessageType.ACK]
        assert acks and max(acks) == 2, acks  # both fragments acknowledged before the close
    finally:
        pair.close()
