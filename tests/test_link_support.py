"""Shared pieces of the link tests: a peer that answers every request, a flow-control tap, and a
raw peer that writes and reads frames by hand.

``EchoBoard`` is a real board-side Link endpoint on its own thread whose answers are a fixed
function of the request (sources = samples and their negation, tensors negated), so each
round trip can be checked value by value. It enforces contiguous stream positions, so a
duplicated or lost audio chunk shows up as an ERROR. No tests here.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from firmware_host.protocol.cobs import CobsError, cobs_decode
from firmware_host.protocol.errors import (
    LinkClosed,
    LinkError,
    MessageError,
    PeerRestarted,
    RequestRejected,
)
from firmware_host.protocol.framing import Frame, FrameDecoder, encode_frame, parse_frame
from firmware_host.protocol.link import Link, LinkConfig, board_config, seq_diff
from firmware_host.protocol.messages import (
    LINK_TYPES,
    AudioChunk,
    ErrorCode,
    ErrorReply,
    GetInfo,
    Hello,
    Info,
    MessageType,
    Ok,
    Ping,
    Pong,
    ResetState,
    SeparatedChunk,
    Tensor,
    TensorIn,
    TensorOut,
    UploadBegin,
    UploadChunk,
    UploadEnd,
)
from firmware_host.protocol.upload import UploadReceiver

FAST = dict(ack_timeout=0.04, max_retries=30)
MANIFEST = '{"sample_rate": 16000, "hop": 128, "sources": ["vocals", "accompaniment"]}'


def fast_host_config(**overrides) -> LinkConfig:
    """Host config with a short retransmission timeout (pseudo-terminals answer in microseconds)."""
    values = dict(FAST)
    values.update(overrides)
    return LinkConfig(**values)


def fast_board_config(**overrides) -> LinkConfig:
    values = dict(FAST)
    values.update(overrides)
    return board_config(**values)


def expected_sources(chunk: AudioChunk) -> np.ndarray:
    """What EchoBoard returns for an audio chunk."""
    return np.stack([chunk.samples, np.negative(chunk.samples)])


class EchoBoard:
    """Serves requests on a board-side Link in a thread until ``stop()``."""

    def __init__(
        self,
        stream,
        config: LinkConfig | None = None,
        upload_dir: str | None = None,
        announce: bool = False,
        paused: bool = False,
    ) -> None:
        self.link = Link(stream, config or fast_board_config(), name="board")
        self.upload = UploadReceiver(upload_dir) if upload_dir else None
        self.position = 0
        self.received = []  # every message handed to the application, in order
        self.errors = []
        self.restarts = 0
        self.paused = threading.Event()  # while set, the application consumes nothing
        if paused:
            self.paused.set()
        self._running = True
        if announce:
            self.link.announce()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while self._running:
            if self.paused.is_set():
                time.sleep(0.005)
                continue
            try:
                message = self.link.receive(timeout=0.05)
            except MessageError as exc:
                self._reply(ErrorReply(ErrorCode.BAD_MESSAGE, str(exc), exc.msg_type))
                continue
            except LinkClosed:
                return
            except PeerRestarted:
                self.restarts += 1
                self.position = 0
                continue
            except LinkError:
                continue
            self.received.append(message)
            try:
                reply = self.answer(message)
            except RequestRejected as exc:
                reply = ErrorReply(exc.code, exc.text, int(message.TYPE))
            if reply is not None:
                self._reply(reply)

    def _reply(self, reply) -> None:
        try:
            self.link.send(reply, timeout=5.0)
        except LinkError as exc:
            self.errors.append(exc)

    def answer(self, message):
        """The reply to one request (None when the request has none)."""
        if isinstance(message, GetInfo):
            return Info("echo-board 1.0", "numpy", "cpu", b"\x11" * 32, 1234, MANIFEST)
        if isinstance(message, ResetState):
            self.position = 0
            return Ok(MessageType.RESET_STATE)
        if isinstance(message, Ping):
            return Pong(message.nonce, message.data)
        if isinstance(message, AudioChunk):
            if message.position != self.position:
                raise RequestRejected(
                    ErrorCode.BAD_AUDIO,
                    f"chunk at position {message.position}, expected {self.position}",
                )
            self.position += message.samples.size
            return SeparatedChunk(
                message.position,
                expected_sources(message),
                invoke_us=message.position % 997,
                n_invokes=message.samples.size // 128,
            )
        if isinstance(message, TensorIn):
            outputs = [Tensor(t.index, np.negative(t.array)) for t in message.tensors]
            return TensorOut(outputs, invoke_us=len(outputs))
        if isinstance(message, (UploadBegin, UploadChunk, UploadEnd)):
            if self.upload is None:
                raise RequestRejected(ErrorCode.UNKNOWN_TYPE, "this board takes no uploads")
            return self.upload.handle(message)
        raise RequestRejected(ErrorCode.UNKNOWN_TYPE, f"unhandled {type(message).__name__}")

    def stop(self) -> None:
        self._running = False
        self.link.close()
        self._thread.join(timeout=2.0)


class FlowTap:
    """Watches both directions of a relay and checks that no data frame exceeds the granted credit.

    Direction ``a->b`` is host to board. The board's credit edge (ack + credit of its latest
    frame) is known to the tap no later than to the host, so a host frame beyond it is a
    violation of the protocol.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.board_edge = None
        self.board_ack = 0
        self.host_next = 0
        self.max_in_flight = 0
        self.violations = []
        self.host_data_frames = 0
        self.host_seqs = set()  # distinct sequence numbers of host data frames

    def __call__(self, direction: str, segment: bytes) -> None:
        try:
            frame = parse_frame(cobs_decode(segment[:-1]))
        except CobsError:
            return
        if not hasattr(frame, "seq"):
            return
        with self._lock:
            if direction == "b->a":
                if frame.msg_type == MessageType.HELLO:
                    self.board_edge = frame.credit
                    self.board_ack = 0
                    self.host_next = 0
                    return
                edge = (frame.ack + frame.credit) & 0xFFFF
                if self.board_edge is None or seq_diff(edge, self.board_edge) > 0:
                    self.board_edge = edge
                if seq_diff(frame.ack, self.board_ack) > 0:
                    self.board_ack = frame.ack
            elif frame.msg_type not in LINK_TYPES:
                self.host_data_frames += 1
                self.host_seqs.add(frame.seq)
                if self.board_edge is None or seq_diff(frame.seq, self.board_edge) >= 0:
                    self.violations.append((frame.seq, self.board_edge))
                if seq_diff(frame.seq + 1, self.host_next) > 0:
                    self.host_next = (frame.seq + 1) & 0xFFFF
                self.max_in_flight = max(
                    self.max_in_flight, seq_diff(self.host_next, self.board_ack)
                )


class RawPeer:
    """Writes and reads raw frames on one end of a pty."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.decoder = FrameDecoder(0xFFFF)
        self.frames = []
        self.session = 0x0BADCAFE

    def send(self, msg_type, seq=0, ack=0, credit=8, flags=0, payload=b"") -> None:
        self.stream.write(encode_frame(Frame(int(msg_type), flags, credit, seq, ack, payload)))

    def send_message(self, message, seq, ack=0, credit=8, flags=0) -> None:
        self.send(message.TYPE, seq, ack, credit, flags, message.encode())

    def _pump(self, timeout: float) -> None:
        data = self.stream.read(65536) if timeout > 0 else b""
        for event in self.decoder.feed(data):
            if isinstance(event, Frame):
                self.frames.append(event)

    def expect(self, msg_type, timeout: float = 1.0, where=None) -> Frame:
        """First frame of ``msg_type`` (matching ``where``) received within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            for index, frame in enumerate(self.frames):
                if frame.msg_type == msg_type and (where is None or where(frame)):
                    del self.frames[: index + 1]
                    return frame
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {MessageType(msg_type).name} frame within {timeout:.1f} s; "
                    f"got {self.frames!r}"
                )
            self._pump(timeout)

    def silence(self, seconds: float) -> list:
        """Every frame received during ``seconds``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._pump(deadline - time.monotonic())
        frames, self.frames = self.frames, []
        return frames

    def handshake(
        self, window: int = 8, max_payload: int = 8192, max_message: int = 1 << 20
    ) -> Hello:
        self.send(
            MessageType.HELLO,
            credit=window,
            payload=Hello(self.session, 0, 0, max_payload, max_message, window).encode(),
        )
        reply = self.expect(
            MessageType.HELLO, where=lambda f: f.payload[8:12] == self.session.to_bytes(4, "little")
        )
        return Hello.decode(reply.payload)
