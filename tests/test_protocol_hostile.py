"""No input kills either end: crafted frames against the real board agent and a real host link,
each over a real pseudo-terminal, written by a raw peer with the bare frame encoder.

The agent answers every crafted request with an ERROR code and keeps serving; a HELLO with
limits out of the documented range, another protocol version or the receiver's own role is
refused with an ERROR by either end; the host raises typed protocol errors.
"""

from __future__ import annotations

import hashlib
import struct
import threading
import time

import numpy as np
import pytest
from board_support import ThreadAgent
from test_link_support import RawPeer, fast_host_config

from firmware_host.protocol.errors import HandshakeRefused, MessageError, ProtocolError
from firmware_host.protocol.link import Link
from firmware_host.protocol.messages import (
    ROLE_BOARD,
    ROLE_HOST,
    ErrorCode,
    ErrorReply,
    GetInfo,
    Hello,
    Info,
    MessageType,
    Ping,
    Pong,
    Tensor,
    TensorOut,
    UploadBegin,
    UploadChunk,
    UploadEnd,
)
from firmware_host.transport import open_port
from hil.client import BoardClient
from hil.emulator import PtyPair

HELLO = struct.Struct("<BBHIIIBBH")


def hello_payload(
    session=0x0BADCAFE,
    echo=0,
    role=ROLE_HOST,
    max_payload=8192,
    max_message=1 << 20,
    window=8,
    version=1,
    reserved=(0, 0),
) -> bytes:
    return HELLO.pack(version, role, max_payload, session, echo, max_message, window, *reserved)


def tensor_record(ndim: int, shape, data: bytes = b"") -> bytes:
    return bytes([1, 0, 0, 0, 0, 1, ndim, 0]) + struct.pack(f"<{len(shape)}I", *shape) + data


@pytest.fixture
def agent(tmp_path):
    """The real agent on an empty bundle folder (no model: nothing to export, starts at once)."""
    with ThreadAgent(tmp_path) as board:
        port = open_port(board.path)
        peer = RawPeer(port)
        yield board, peer
        port.close()


def _error(frame) -> ErrorReply:
    assert frame.msg_type == MessageType.ERROR, frame
    return ErrorReply.decode(frame.payload)


def _request(peer, seq, msg_type, payload, ack):
    peer.send(msg_type, seq=seq, ack=ack, payload=payload)
    return peer.expect(MessageType.ERROR, where=lambda f: f.seq == ack)


def test_crafted_tensor_records_are_answered_with_bad_message_and_the_agent_stays_up(agent):
    board, peer = agent
    peer.handshake()
    crafted = [
        tensor_record(65, [1] * 65, b"\x00"),
        tensor_record(255, [1] * 255, b"\x00"),
        tensor_record(3, [2**32 - 1, 2**32 - 1, 0]),
        tensor_record(3, [2**32 - 1, 2**32 - 1, 1]),
        tensor_record(2, [65536, 65536]),
    ]
    texts = []
    for seq, payload in enumerate(crafted):
        error = _error(_request(peer, seq, MessageType.TENSOR_IN, payload, ack=seq))
        assert error.code == ErrorCode.BAD_MESSAGE and error.request_type == 0x22, error
        texts.append(error.text)
    assert "tensor 0 has 65 dimensions, at most 8" in texts[0]
    assert "(4294967295, 4294967295, 0) has a zero dimension" in texts[2]
    assert "needs 18446744065119617025 bytes" in texts[3]
    seq = len(crafted)
    peer.send_message(Ping(7, b"alive"), seq=seq, ack=seq)
    pong = peer.expect(MessageType.PONG)
    assert Pong.decode(pong.payload) == Pong(7, b"alive")


@pytest.mark.parametrize(
    "fields, code, text",
    [
        (dict(max_payload=0), ErrorCode.BAD_HELLO, "max_payload must be 64..65535, got 0"),
        (dict(max_payload=1), ErrorCode.BAD_HELLO, "got 1"),
        (dict(max_payload=63), ErrorCode.BAD_HELLO, "got 63"),
        (dict(window=0), ErrorCode.BAD_HELLO, "window must be 1..255"),
        (dict(max_message=100, max_payload=200), ErrorCode.BAD_HELLO, "max_message 100"),
        (dict(session=0), ErrorCode.BAD_HELLO, "session_id must not be 0"),
        (dict(version=2), ErrorCode.UNSUPPORTED_VERSION, "protocol_version 2 is not supported"),
        (dict(role=ROLE_BOARD), ErrorCode.BAD_HELLO, "this end's own role"),
        (dict(role=7), ErrorCode.BAD_HELLO, "role must be 0 (host) or 1 (board)"),
    ],
    ids=lambda v: str(v) if not isinstance(v, dict) else "-".join(f"{k}{x}" for k, x in v.items()),
)
def test_a_hello_out_of_range_is_refused_with_an_error_and_opens_no_session(
    agent, fields, code, text
):
    board, peer = agent
    peer.silence(0.05)  # the agent's start-up announcement
    peer.send(MessageType.HELLO, payload=hello_payload(**fields))
    frame = peer.expect(MessageType.ERROR)
    assert (frame.seq, frame.ack, frame.credit) == (0, 0, 0)  # outside any session
    error = _error(frame)
    assert error.code == code and error.request_type == MessageType.HELLO
    assert text in error.text, error.text
    assert not board.link.connected
    # a GET_INFO without a session is dropped; the agent announces itself instead
    peer.send_message(GetInfo(), seq=0)
    assert not [f for f in peer.silence(0.2) if f.msg_type == MessageType.INFO]
    # the very same agent then serves a well-formed peer
    peer.handshake()
    peer.send_message(GetInfo(), seq=0)
    info = Info.decode(peer.expect(MessageType.INFO).payload)
    assert not info.has_model and info.protocol_version == 1


def test_a_reply_beyond_the_host_max_message_becomes_an_error_that_fits(agent):
    board, peer = agent
    peer.handshake(max_payload=64, max_message=64)
    peer.send_message(GetInfo(), seq=0)
    frame = peer.expect(MessageType.ERROR)
    assert len(frame.payload) <= 64
    error = _error(frame)
    assert error.code == ErrorCode.MESSAGE_TOO_LARGE and error.request_type == 0x10
    assert error.text.startswith("the INFO reply does not fit")
    peer.send_message(Ping(1, b"ok"), seq=1, ack=1)
    assert Pong.decode(peer.expect(MessageType.PONG).payload) == Pong(1, b"ok")


def test_an_upload_is_dropped_when_the_board_link_gave_up_and_a_new_session_opened(agent):
    board, peer = agent
    peer.handshake()
    peer.send_message(UploadBegin(64, hashlib.sha256(b"x").digest()), seq=0)
    peer.expect(MessageType.OK)  # never acknowledged: the board's link gives up on it
    deadline = time.monotonic() + 10.0
    while board.link.connected and time.monotonic() < deadline:
        peer.silence(0.1)
    assert not board.link.connected
    peer.session = 0x600DF00D
    peer.handshake()  # a new session on an idle link: no restart is reported to the agent
    peer.send_message(UploadEnd(), seq=0)
    error = _error(peer.expect(MessageType.ERROR))
    assert error.code == ErrorCode.UPLOAD_NOT_STARTED, error  # not SIZE_MISMATCH of the old one


def test_nonzero_reserved_bytes_in_hello_are_ignored(agent):
    board, peer = agent
    peer.silence(0.05)  # the agent's start-up announcement
    peer.send(MessageType.HELLO, payload=hello_payload(reserved=(0xFF, 0xFFFF)))
    reply = Hello.decode(peer.expect(MessageType.HELLO).payload)
    assert reply.echo_session == 0x0BADCAFE and board.link.connected


def test_a_half_finished_upload_is_removed_and_cannot_be_ended_by_a_later_session(agent, tmp_path):
    board, peer = agent
    peer.handshake()
    data = b"\x01" * 500
    peer.send_message(UploadBegin(len(data), hashlib.sha256(data).digest()), seq=0)
    peer.expect(MessageType.OK)
    peer.send_message(UploadChunk(0, data[:200]), seq=1, ack=1)
    partial = tmp_path / ".model.tflite.upload"
    deadline = time.monotonic() + 2.0
    while partial.stat().st_size < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert partial.stat().st_size == 200
    peer.session = 0x600DF00D  # the host restarts: a new session
    peer.handshake()
    peer.send_message(UploadEnd(), seq=0)
    error = _error(peer.expect(MessageType.ERROR))
    assert error.code == ErrorCode.UPLOAD_NOT_STARTED, error
    assert not partial.exists()
    assert any("discarded an unfinished upload" in line for line in board.logs)


# ------------------------------------------------------------------ the host against a bad board


@pytest.fixture
def host_rig():
    pair = PtyPair()
    peer = RawPeer(pair.master_stream())
    links = []

    def make(**overrides):
        link = Link(open_port(pair.slave_path), fast_host_config(**overrides), name="host")
        links.append(link)
        return link

    yield make, peer
    for link in links:
        link.close()
    pair.close()


def _answer_hello(peer, **fields):
    request = Hello.decode(peer.expect(MessageType.HELLO).payload)
    fields.setdefault("role", ROLE_BOARD)
    peer.send(MessageType.HELLO, payload=hello_payload(echo=request.session_id, **fields))
    return request


@pytest.mark.parametrize(
    "fields, code",
    [
        (dict(max_payload=0), ErrorCode.BAD_HELLO),
        (dict(version=2), ErrorCode.UNSUPPORTED_VERSION),
        (dict(role=ROLE_HOST), ErrorCode.BAD_HELLO),
    ],
    ids=["max_payload0", "version2", "role-host"],
)
def test_the_host_refuses_a_bad_hello_reply_at_once_with_a_typed_error(host_rig, fields, code):
    make, peer = host_rig
    host = make()
    result = {}

    def connect():
        try:
            host.connect(timeout=5.0)
        except Exception as exc:  # collected for the asserts below
            result["exc"] = exc

    thread = threading.Thread(target=connect)
    start = time.monotonic()
    thread.start()
    _answer_hello(peer, **fields)
    thread.join(5.0)
    assert time.monotonic() - start < 1.0  # refused at once, not after the retries
    exc = result["exc"]
    assert isinstance(exc, HandshakeRefused) and isinstance(exc, ProtocolError)
    assert exc.code == code and not exc.by_peer
    refusal = _error(peer.expect(MessageType.ERROR))  # and the board is told why
    assert refusal.code == code and refusal.request_type == MessageType.HELLO
    assert not host.connected


def test_a_board_refusing_the_host_hello_ends_connect_with_its_code(host_rig):
    make, peer = host_rig
    host = make()
    result = {}
    thread = threading.Thread(target=lambda: _catch(result, host.connect, 5.0))
    thread.start()
    peer.expect(MessageType.HELLO)
    refusal = ErrorReply(ErrorCode.UNSUPPORTED_VERSION, "this board speaks version 3", 0x01)
    peer.send(MessageType.ERROR, credit=0, payload=refusal.encode())
    thread.join(5.0)
    exc = result["exc"]
    assert isinstance(exc, HandshakeRefused) and exc.by_peer
    assert exc.code == ErrorCode.UNSUPPORTED_VERSION and "version 3" in str(exc)


def test_a_refusal_arriving_inside_a_session_is_never_delivered(host_rig):
    make, peer = host_rig
    host = make()
    result = {}
    thread = threading.Thread(target=lambda: _catch(result, host.connect, 5.0))
    thread.start()
    _answer_hello(peer)
    thread.join(5.0)
    assert host.connected and "exc" not in result
    refusal = ErrorReply(ErrorCode.BAD_HELLO, "stale refusal", MessageType.HELLO)
    peer.send(MessageType.ERROR, credit=0, payload=refusal.encode())
    with pytest.raises(Exception, match="a message from the peer"):
        host.receive(0.3)
    assert host.connected and host.stats.messages_received == 0


def _catch(result, call, *args):
    try:
        result["value"] = call(*args)
    except Exception as exc:  # collected for the asserts
        result["exc"] = exc


def _serve_once(peer, reply_payload, reply_type):
    """Answer the host's next sequenced request with a crafted reply."""
    request = peer.expect(MessageType.GET_INFO if reply_type == MessageType.INFO else 0x22)
    peer.send(reply_type, seq=0, ack=(request.seq + 1) & 0xFFFF, payload=reply_payload)


@pytest.mark.parametrize(
    "reply_type, payload, error",
    [
        (
            MessageType.TENSOR_OUT,
            b"\x00\x00\x00\x00" + tensor_record(65, [1] * 65, b"\x00"),
            MessageError,
        ),
        (
            MessageType.TENSOR_OUT,
            b"\x00\x00\x00\x00" + tensor_record(3, [2**32 - 1] * 2 + [0]),
            MessageError,
        ),
        (MessageType.INFO, Info("a", "b", "c", protocol_version=2).encode(), HandshakeRefused),
        (
            MessageType.INFO,
            Info("a", "b", "c", manifest_json="[" * 3000 + "]" * 3000).encode(),
            MessageError,
        ),
    ],
    ids=["tensor-65-dims", "tensor-zero-dim", "info-version-2", "info-deep-json"],
)
def test_the_host_raises_a_typed_protocol_error_for_a_crafted_reply(
    host_rig, reply_type, payload, error
):
    make, peer = host_rig
    client = BoardClient(make(), timeout=3.0)
    result = {}
    if reply_type == MessageType.INFO:
        call = client.info
    else:
        call = lambda: client.run_tensors([Tensor(0, np.zeros(3, np.int8))])  # noqa: E731
    thread = threading.Thread(target=lambda: _catch(result, _connect_then, client, call))
    thread.start()
    _answer_hello(peer)
    _serve_once(peer, payload, reply_type)
    thread.join(5.0)
    exc = result.get("exc")
    assert isinstance(exc, error) and isinstance(exc, ProtocolError), repr(exc)
    # never taken for a bad argument of the command (which would be exit status 2)
    assert not isinstance(exc, (ValueError, IndexError, TypeError)), type(exc).__mro__


def _connect_then(client, call):
    client.link.connect(timeout=3.0)
    return call()


def test_tensor_out_decoder_is_exercised_by_name():
    with pytest.raises(MessageError, match="TENSOR_OUT: tensor 0 has 65 dimensions"):
        TensorOut.decode(b"\x00" * 4 + tensor_record(65, [1] * 65, b"\x00"))


def test_hundreds_of_random_well_framed_messages_do_not_stop_the_agent(agent):
    """CRC-valid frames of every type (and unknown ones) with random flags, sequence numbers and
    payloads, some cut from real messages: the agent keeps its thread and then serves a new
    session as if nothing happened."""
    import random

    board, peer = agent
    rng = random.Random(5)
    peer.handshake()
    seeds = [
        Ping(1, b"abc").encode(),
        Info("a", "b", "c").encode(),
        tensor_record(2, [2, 3], b"\x00" * 6),
        UploadBegin(10, bytes(32)).encode(),
        hello_payload(),
        ErrorReply(1, "x", 0x01).encode(),
    ]
    types = [int(t) for t in MessageType] + [0x00, 0x7E, 0xFF]
    for number in range(400):
        if rng.random() < 0.5:
            payload = bytearray(rng.choice(seeds))
            for _ in range(rng.randrange(1, 4)):
                if payload:
                    payload[rng.randrange(len(payload))] = rng.randrange(256)
            payload = bytes(payload[: rng.randrange(len(payload) + 1)])
        else:
            payload = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64)))
        peer.send(
            rng.choice(types),
            seq=rng.choice((number, rng.randrange(0x10000))) & 0xFFFF,
            ack=rng.randrange(0x10000),
            credit=rng.randrange(256),
            flags=rng.randrange(256),
            payload=payload,
        )
        if number % 50 == 0:
            peer.silence(0.02)
    peer.silence(0.3)
    assert board._thread.is_alive()
    peer.session = 0x0DDBA11
    peer.handshake()
    peer.send_message(Ping(77, b"after"), seq=0)
    assert Pong.decode(peer.expect(MessageType.PONG, timeout=3.0).payload) == Pong(77, b"after")
    assert board.link.stats.internal_errors == 0
