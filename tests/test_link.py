"""Round trips of every message between a host client (pyserial) and a board on real ptys.

Also: fragmentation, size limits, credit-based flow control observed on the wire, overhead
measured on the wire, and the transports (socket://, loop://, baud throttling).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
import time

import numpy as np
import pytest
from test_link_support import (
    EchoBoard,
    FlowTap,
    expected_sources,
    fast_board_config,
    fast_host_config,
)

from firmware_host.protocol.errors import LinkClosed, MessageError, PeerError
from firmware_host.protocol.link import Link
from firmware_host.protocol.messages import (
    ROLE_BOARD,
    AudioChunk,
    ErrorCode,
    GetInfo,
    MessageType,
    Ok,
    Ping,
    ResetState,
    Tensor,
    UploadBegin,
    UploadChunk,
    UploadEnd,
)
from firmware_host.transport import FdStream, StreamClosed, ThrottledStream, open_port
from hil.client import BoardClient
from hil.emulator import PtyPair
from hil.faults import PtyRelay
from hil.overhead import DEFAULT_CHUNK_HOPS, chunk_overhead

RNG = np.random.default_rng(5)


def audio_chunks(count: int, hops: int = DEFAULT_CHUNK_HOPS, start: int = 0) -> list:
    size = hops * 128
    return [
        AudioChunk(start + i * size, RNG.integers(-32768, 32768, size, dtype=np.int16))
        for i in range(count)
    ]


@pytest.fixture
def rig(tmp_path):
    """An EchoBoard on a pty master; the host opens the slave path through pyserial."""
    pair = PtyPair()
    parts = {}

    def make(board_config=None, host_config=None):
        parts["board"] = EchoBoard(pair.master_stream(), board_config, upload_dir=str(tmp_path))
        host = Link(open_port(pair.slave_path), host_config or fast_host_config(), name="host")
        parts["host"] = host
        return parts["board"], BoardClient(host, timeout=5.0)

    yield make
    if "host" in parts:
        parts["host"].close(close_stream=True)
    if "board" in parts:
        parts["board"].stop()
    pair.close()


def test_every_request_round_trips_through_pyserial_and_a_pty(rig, tmp_path):
    board, client = rig()
    info = client.connect(timeout=2.0)
    assert (info.agent_version, info.runtime, info.delegate) == ("echo-board 1.0", "numpy", "cpu")
    assert info.model_sha256 == b"\x11" * 32 and info.model_size == 1234
    assert info.manifest["sources"] == ["vocals", "accompaniment"]
    assert client.link.peer.role == ROLE_BOARD

    client.reset_state()
    assert client.ping(b"abc" * 50) > 0

    chunk = audio_chunks(1)[0]
    separated = client.separate(chunk)
    np.testing.assert_array_equal(separated.sources, expected_sources(chunk))
    assert (separated.position, separated.n_invokes, separated.invoke_us) == (
        0,
        DEFAULT_CHUNK_HOPS,
        0,
    )

    tensors = [
        Tensor(0, RNG.integers(-128, 128, (1, 4, 257), dtype=np.int8)),
        Tensor(3, RNG.integers(-32768, 32767, (2, 5), dtype=np.int16)),
        Tensor(4, RNG.normal(size=(3,)).astype(np.float32)),
    ]
    out = client.run_tensors(tensors)
    assert out.tensors == [Tensor(t.index, np.negative(t.array)) for t in tensors]
    assert out.invoke_us == 3

    model_path = tmp_path / "model.tflite"
    model_path.write_bytes(b"old model")
    model = os.urandom(30000)
    done = client.upload(model)
    assert done.sha256 == hashlib.sha256(model).digest() and done.size == len(model)
    assert model_path.read_bytes() == model
    assert sorted(os.listdir(tmp_path)) == ["model.tflite"]  # no temporary file left

    with pytest.raises(PeerError) as error:
        client.separate(AudioChunk(5, chunk.samples))  # not the next stream position
    assert error.value.code == ErrorCode.BAD_AUDIO and error.value.code_name == "BAD_AUDIO"
    assert error.value.request_type == MessageType.AUDIO_CHUNK
    assert "expected 1024" in str(error.value)

    kinds = [type(m).__name__ for m in board.received]
    assert kinds[:5] == ["GetInfo", "ResetState", "Ping", "AudioChunk", "TensorIn"]
    assert kinds.count("UploadChunk") == -(-len(model) // (8192 - 4))
    stats = client.link.stats
    assert stats.resends == 0 and stats.decode_errors == 0


def test_a_corrupt_or_gapped_upload_keeps_the_old_model(rig, tmp_path):
    board, client = rig()
    client.connect(timeout=2.0)
    model_path = tmp_path / "model.tflite"
    model_path.write_bytes(b"old model")
    link = client.link
    data = os.urandom(5000)
    digest = hashlib.sha256(data).digest()

    link.send(UploadBegin(len(data), digest))
    assert isinstance(link.receive(2.0), Ok)
    damaged = bytearray(data)
    damaged[1234] ^= 1
    link.send(UploadChunk(0, bytes(damaged)))
    link.send(UploadEnd())
    reply = link.receive(2.0)
    assert (reply.code, reply.request_type) == (
        ErrorCode.UPLOAD_SHA256_MISMATCH,
        MessageType.UPLOAD_END,
    )
    assert model_path.read_bytes() == b"old model"

    link.send(UploadBegin(len(data), digest))
    assert isinstance(link.receive(2.0), Ok)
    link.send(UploadChunk(0, data[:1000]))
    link.send(UploadChunk(2000, data[2000:3000]))  # skips bytes 1000..1999
    link.send(UploadChunk(3000, data[3000:]))  # ignored: the upload was aborted
    link.send(UploadEnd())
    errors = [link.receive(2.0), link.receive(2.0)]
    assert [(e.code, e.request_type) for e in errors] == [
        (ErrorCode.UPLOAD_OFFSET, MessageType.UPLOAD_CHUNK),
        (ErrorCode.UPLOAD_NOT_STARTED, MessageType.UPLOAD_END),
    ]
    assert "expected offset 1000" in errors[0].text and "aborted" in errors[1].text
    assert model_path.read_bytes() == b"old model"
    assert sorted(os.listdir(tmp_path)) == ["model.tflite"]

    assert client.upload(data, chunk_size=700).sha256 == digest  # a clean upload still works
    assert model_path.read_bytes() == data


def test_streaming_keeps_chunks_in_flight_and_returns_them_in_order(rig):
    board, client = rig()
    client.connect(timeout=2.0)
    client.reset_state()
    chunks = audio_chunks(60)
    replies = list(client.stream(chunks, max_outstanding=4))
    assert [r.position for r in replies] == [c.position for c in chunks]
    for chunk, reply in zip(chunks, replies, strict=True):
        np.testing.assert_array_equal(reply.sources, expected_sources(chunk))
    assert 1 < client.link.stats.max_in_flight <= 4


def test_messages_larger_than_the_peer_frame_limit_are_fragmented(rig):
    board, client = rig(board_config=fast_board_config(max_payload=256))
    client.connect(timeout=2.0)
    tensor = Tensor(0, RNG.integers(-128, 128, (40, 257), dtype=np.int8))
    host_before, board_before = (
        client.link.stats.data_frames_sent,
        board.link.stats.data_frames_sent,
    )
    out = client.run_tensors([tensor])
    assert out.tensors == [Tensor(0, np.negative(tensor.array))]
    assert client.link.stats.data_frames_sent - host_before == -(-(8 + 8 + 40 * 257) // 256)
    assert board.link.stats.data_frames_sent - board_before == 2  # the host takes 8192-byte frames


def test_a_message_beyond_the_peer_limit_is_refused_before_sending(rig):
    board, client = rig(board_config=fast_board_config(max_payload=1024, max_message=4096))
    client.connect(timeout=2.0)
    with pytest.raises(MessageError, match="max message size 4096"):
        client.link.send(Ping(1, b"\x01" * 5000))
    assert client.ping(b"\x01" * 4000) > 0
    assert not any(isinstance(m, Ping) and len(m.data) == 5000 for m in board.received)


def test_sender_never_exceeds_the_credit_the_receiver_granted():
    tap = FlowTap()
    with PtyRelay(tap=tap) as relay:
        board = EchoBoard(relay.board_stream(), fast_board_config(window=3), paused=True)
        host = Link(relay.host_stream(), fast_host_config(), name="host")
        try:
            host.connect(timeout=2.0)  # the board application consumes nothing yet
            sent = []

            def send_all():
                for nonce in range(10):
                    host.send(Ping(nonce), timeout=5.0)
                    sent.append(nonce)

            sender = threading.Thread(target=send_all, daemon=True)
            sender.start()
            deadline = time.monotonic() + 2.0
            while len(sent) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.15)  # several retransmission timeouts: time enough to overrun the window
            assert len(sent) == 3  # the fourth send blocks: no credit
            assert len(tap.host_seqs) == 3 and tap.max_in_flight <= 3  # on the wire, too
            assert host.stats.polls_sent >= 1  # zero-window probes while blocked
            board.paused.clear()
            sender.join(timeout=5.0)
            host.flush(timeout=5.0)
            replies = [host.receive(2.0).nonce for _ in range(10)]
        finally:
            host.close()
            board.stop()
    assert replies == list(range(10))
    assert [m.nonce for m in board.received] == list(range(10))
    assert tap.violations == [] and 1 <= tap.max_in_flight <= 3
    assert host.stats.max_in_flight <= 3


def test_wire_overhead_of_streaming_matches_the_model(rig):
    board, client = rig()
    client.connect(timeout=2.0)
    client.reset_state()
    before_sent, before_received = client.link.stats.bytes_sent, client.link.stats.bytes_received
    chunks = audio_chunks(40)
    list(client.stream(chunks))
    stats = client.link.stats
    wire = stats.bytes_sent - before_sent + stats.bytes_received - before_received
    pcm = sum(3 * c.samples.nbytes for c in chunks)
    measured = (wire - pcm) / wire
    model = chunk_overhead(DEFAULT_CHUNK_HOPS)
    assert measured <= model.overhead + 1e-9  # the model counts one stand-alone ACK per frame
    assert measured <= 0.05
    assert measured >= (model.overhead_bytes - 2 * 17) / model.wire_bytes - 0.002


def test_counters_include_a_write_whose_answer_came_back_before_it_was_tallied(rig):
    board, client = rig()
    client.connect(timeout=2.0)
    client.reset_state()
    link = client.link
    plain_write = link._write_some

    def write_then_stall(stream, data, timeout):
        written = plain_write(stream, data, timeout)
        if written > 1000:  # the chunk's frame: the board answers while this thread sleeps
            time.sleep(0.3)
        return written

    link._write_some = write_then_stall
    before = link.stats.bytes_sent
    chunk = audio_chunks(1)[0]
    list(client.stream([chunk]))
    assert link.stats.bytes_sent - before >= chunk.samples.nbytes


def test_socket_url_reaches_a_board_behind_a_tcp_bridge():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    accepted = {}
    thread = threading.Thread(
        target=lambda: accepted.setdefault("conn", server.accept()[0]), daemon=True
    )
    thread.start()
    host_stream = open_port(f"socket://127.0.0.1:{port}")
    thread.join(timeout=2.0)
    conn = accepted["conn"]
    board = EchoBoard(FdStream(conn.fileno(), close_fd=False))
    host = Link(host_stream, fast_host_config(), name="host")
    try:
        client = BoardClient(host, timeout=5.0)
        assert client.connect(timeout=2.0).agent_version == "echo-board 1.0"
        payload = os.urandom(20000)
        assert client.ping(payload) > 0
    finally:
        host.close(close_stream=True)
        board.stop()
        conn.close()
        server.close()


def test_loop_url_stream_returns_what_was_written():
    stream = open_port("loop://")
    try:
        stream.write(b"\x00\x01abc\x00")
        time.sleep(0.01)
        got = b""
        deadline = time.monotonic() + 1.0
        while len(got) < 6 and time.monotonic() < deadline:
            got += stream.read(100)
        assert got == b"\x00\x01abc\x00"
        assert stream.read(100) == b""
    finally:
        stream.close()


@pytest.mark.parametrize("opener", ["pyserial", "fd"])
def test_write_some_returns_within_its_timeout_when_the_line_is_full(opener):
    with PtyPair() as pair:
        stream = open_port(pair.slave_path) if opener == "pyserial" else pair.slave_stream()
        data = os.urandom(1_000_000)
        taken, calls = 0, []
        for _ in range(8):  # nothing reads the other end: the pty buffers a few KB at most
            start = time.monotonic()
            count = stream.write_some(data[taken:], 0.1)
            calls.append((count, time.monotonic() - start))
            taken += count
        assert 0 < taken < 200_000  # each call returned with what the line took, not all of it
        assert all(elapsed < 1.0 for _, elapsed in calls)  # none blocked on the full line
        waits = [elapsed for count, elapsed in calls if count == 0]
        assert waits and min(waits) >= 0.09  # a full line: waited the timeout, wrote nothing
        reader = pair.master_stream()
        got = b""
        deadline = time.monotonic() + 5.0
        while len(got) < taken and time.monotonic() < deadline:
            got += reader.read(65536)
        assert got == data[:taken]
        if opener == "pyserial":
            stream.close()


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_closing_a_serial_port_under_a_blocked_write_raises_stream_closed():
    with PtyPair() as pair:
        port = open_port(pair.slave_path)  # pyserial on a real pty whose other end reads nothing
        failures = []

        def write():
            try:
                port.write(os.urandom(200_000))
            except Exception as exc:  # noqa: BLE001 (the test checks which one)
                failures.append(exc)

        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(0.2)
        assert writer.is_alive()  # blocked on the full pty
        start = time.monotonic()
        port.close()
        writer.join(timeout=2.0)
        elapsed = time.monotonic() - start
    assert not writer.is_alive() and elapsed < 0.5
    assert len(failures) == 1 and isinstance(failures[0], StreamClosed), failures
    assert f"serial port {pair.slave_path} was closed while writing" in str(failures[0])


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_link_whose_port_is_closed_under_a_blocked_write_reports_link_closed():
    with PtyPair() as pair:
        board = EchoBoard(pair.master_stream())
        port = open_port(pair.slave_path)
        host = Link(port, fast_host_config(max_retries=50), name="host")
        try:
            host.connect(timeout=2.0)
            board.stop()  # nothing reads the board's end: the host's writes stall
            for nonce in range(8):
                host.send(Ping(nonce, os.urandom(8000)), timeout=2.0)
            time.sleep(0.2)
            port.close()  # e.g. a USB adapter unplugged, or another thread closing the port
            start = time.monotonic()
            with pytest.raises(LinkClosed) as closed:
                host.flush(timeout=3.0)
            elapsed = time.monotonic() - start
        finally:
            host.close()
    # whichever of the link's threads notices first (both were using the port) says so
    assert f"host: serial port {pair.slave_path} was closed while" in str(closed.value)
    assert elapsed < 0.5


def test_throttled_stream_paces_a_pty_to_the_baud_rate():
    with PtyPair() as pair:
        slow = ThrottledStream(pair.master_stream(), 115200)
        reader = pair.slave_stream()
        data = os.urandom(3000)
        got = bytearray()
        thread = threading.Thread(target=lambda: slow.write(data))
        start = time.monotonic()
        thread.start()
        while len(got) < len(data) and time.monotonic() - start < 2.0:
            got += reader.read(65536)
        elapsed = time.monotonic() - start
        thread.join()
    assert bytes(got) == data
    expected = len(data) * 10 / 115200.0  # 0.26 s
    assert expected * 0.9 <= elapsed <= expected * 2 + 0.2


def test_link_over_a_throttled_uart_sets_its_timeout_from_the_baud_rate():
    with PtyPair() as pair:
        baud = 921600
        board = EchoBoard(ThrottledStream(pair.master_stream(), baud), fast_board_config(baud=baud))
        host = Link(pair.slave_stream(), fast_host_config(baud=baud), name="host")
        try:
            client = BoardClient(host, timeout=5.0)
            client.connect(timeout=2.0)
            client.reset_state()
            chunks = audio_chunks(5)
            start = time.monotonic()
            replies = list(client.stream(chunks))
            elapsed = time.monotonic() - start
        finally:
            host.close()
            board.stop()
    assert [r.position for r in replies] == [c.position for c in chunks]
    board_bytes = 5 * chunk_overhead(DEFAULT_CHUNK_HOPS).wire_bytes * 2 / 3  # replies + its ACKs
    assert elapsed >= 0.8 * board_bytes * 10 / baud  # the board's line really is a 921600-baud UART
    assert host.retransmit_timeout > 0.04 + 3 * 8192 * 10 / baud


def test_requests_reach_the_board_application_exactly_once(rig):
    board, client = rig()
    client.connect(timeout=2.0)
    for nonce in range(6):  # fewer outstanding requests than either window: no reply waits
        client.link.send(Ping(nonce))
    client.link.send(GetInfo())
    client.link.send(ResetState())
    replies = [client.link.receive(2.0) for _ in range(8)]
    assert [r.nonce for r in replies[:6]] == list(range(6))
    assert [type(r).__name__ for r in replies[6:]] == ["Info", "Ok"]
    assert [type(m).__name__ for m in board.received] == ["GetInfo"] + ["Ping"] * 6 + [
        "GetInfo",
        "ResetState",
    ]
    assert [m.nonce for m in board.received[1:7]] == list(range(6))


@pytest.mark.parametrize("url", ["socket://127.0.0.1:99999", "socket://127.0.0.1",
                                 "socket://:8080", "rfc2217://host:0"])
def test_a_network_port_url_without_a_usable_port_is_named(url):
    from firmware_host.transport import open_port

    with pytest.raises(OSError, match=f"cannot open serial port {re.escape(url)}: a "
                                      r"\w+:// URL needs HOST:PORT with PORT from 1 to 65535"):
        open_port(url)
