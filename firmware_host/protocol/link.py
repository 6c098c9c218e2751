"""Reliable link: exactly-once, in-order messages over a byte stream that corrupts, drops, stalls.

Both ends (host harness and board agent) run the same ``Link``. It frames messages
(fragmenting those larger than the peer's max payload), numbers them, recovers losses (on NAK
or timeout it resends the oldest unacknowledged frame alone, with backoff, and only once that
frame is acknowledged goes back to resend the frames after it), bounds the retransmissions of
each frame, acknowledges duplicates without delivering them twice, and sends a frame only when
the peer granted credit for it. A HELLO exchange opens a session; a HELLO with a new session id
from the peer means it restarted, which resets the sequence state and surfaces
``PeerRestarted`` once. Rules are specified in docs/protocol.md.

Two threads per link: a reader that decodes frames and updates state (it never blocks on a
write, so two links cannot deadlock on full buffers) and a writer that owns the stream's write
side, builds each frame with the current ack and credit, and runs the timers. The writer hands
the stream a bounded ``write_some`` at a time, so a peer that stops reading cannot hold its
timers: the retransmissions run out and the link fails with a LinkTimeout saying so.
"""

from __future__ import annotations

import collections
import os
import struct
import threading
import time
from dataclasses import dataclass, replace

from firmware_host.transport import StreamClosed, as_byte_stream, write_some

from .errors import (
    HandshakeRefused,
    LinkClosed,
    LinkTimeout,
    MessageError,
    NotConnected,
    PeerRestarted,
)
from .framing import (
    DEFAULT_MAX_PAYLOAD,
    FLAG_MORE,
    FLAG_POLL,
    MAX_PAYLOAD_LIMIT,
    MIN_MAX_PAYLOAD,
    DecodeError,
    Frame,
    FrameDecoder,
    encode_frame,
    max_wire_size,
)
from .messages import (
    LINK_TYPES,
    ROLE_BOARD,
    ROLE_HOST,
    ROLE_NAMES,
    ErrorCode,
    ErrorReply,
    Hello,
    Message,
    MessageType,
    decode_message,
    message_type_name,
)

DEFAULT_WINDOW = 8
DEFAULT_MAX_MESSAGE = 1 << 20
DEFAULT_ACK_TIMEOUT = 0.25
DEFAULT_MAX_RETRIES = 8
MAX_BACKOFF = 2  # after a timeout without progress the retransmission timeout doubles, once

_IDLE = "idle"  # no session (never connected, or dropped after a failure)
_CONNECTING = "connecting"  # connect() sent HELLO and waits for the reply
_ESTABLISHED = "established"
_CLOSED = "closed"


def seq_diff(a: int, b: int) -> int:
    """Signed distance a - b between 16-bit sequence numbers (serial-number arithmetic)."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def new_session_id() -> int:
    """A random non-zero 32-bit session id."""
    while True:
        (value,) = struct.unpack("<I", os.urandom(4))
        if value:
            return value


@dataclass
class LinkConfig:
    """Limits this end announces in HELLO and its retransmission timing."""

    max_payload: int = DEFAULT_MAX_PAYLOAD  # largest frame payload this end accepts
    max_message: int = DEFAULT_MAX_MESSAGE  # largest reassembled message this end accepts
    window: int = DEFAULT_WINDOW  # messages this end buffers for the application (credits)
    ack_timeout: float = DEFAULT_ACK_TIMEOUT  # retransmission timeout on a fast link, seconds
    max_retries: int = DEFAULT_MAX_RETRIES  # resends of the oldest frame without progress
    baud: int | None = None  # line speed, when known: adds frame transmit times to the timeout
    role: int = ROLE_HOST

    def check(self) -> None:
        """Raise ValueError naming the field that is out of range."""
        if not MIN_MAX_PAYLOAD <= self.max_payload <= MAX_PAYLOAD_LIMIT:
            raise ValueError(
                f"max_payload must be {MIN_MAX_PAYLOAD}..{MAX_PAYLOAD_LIMIT}, "
                f"got {self.max_payload}"
            )
        if not self.max_payload <= self.max_message <= 0xFFFFFFFF:
            raise ValueError(
                f"max_message must be at least max_payload ({self.max_payload}) "
                f"and below 2**32, got {self.max_message}"
            )
        if not 1 <= self.window <= 255:
            raise ValueError(f"window must be 1..255, got {self.window}")
        if self.ack_timeout <= 0 or self.max_retries < 0:
            raise ValueError("ack_timeout must be > 0 and max_retries >= 0")
        if self.baud is not None and self.baud <= 0:
            raise ValueError(f"baud must be positive, got {self.baud!r}")

    def retransmit_timeout(self, peer_max_payload: int) -> float:
        """RTO: ack_timeout plus, at a known baud, three maximum frames' transmit time."""
        rto = self.ack_timeout
        if self.baud:
            largest = max(self.max_payload, peer_max_payload)
            rto += 3.0 * max_wire_size(largest) * 10.0 / self.baud
        return rto

    def give_up_time(self, peer_max_payload: int) -> float:
        """Seconds without progress before the link fails: the first RTO, then ``max_retries``
        backed-off RTOs (a dead or stalled peer is reported after this long)."""
        rto = self.retransmit_timeout(peer_max_payload)
        return sum(rto * min(2**k, MAX_BACKOFF) for k in range(self.max_retries + 1))


@dataclass
class PeerParams:
    """What the peer announced in its HELLO."""

    session_id: int
    role: int
    max_payload: int
    max_message: int
    window: int
    protocol_version: int


@dataclass
class LinkStats:
    """Counters of one link (a snapshot; read ``Link.stats``)."""

    frames_sent: int = 0
    frames_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    data_frames_sent: int = 0  # first transmissions of sequenced frames
    resends: int = 0  # retransmissions of sequenced frames
    timeouts: int = 0  # retransmission timer expiries
    naks_sent: int = 0
    naks_received: int = 0
    acks_sent: int = 0  # stand-alone ACK frames
    polls_sent: int = 0
    hellos_sent: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    duplicates: int = 0  # sequenced frames received twice (acknowledged, not delivered)
    out_of_order: int = 0  # frames after a gap (a lost frame): dropped and NAKed
    window_violations: int = 0  # frames beyond the credit this end granted
    bad_acks: int = 0  # ack fields acknowledging frames never sent
    bad_fragments: int = 0
    oversize_messages: int = 0
    frames_without_session: int = 0
    hellos_refused: int = 0  # peer HELLOs this end refused (bad version, limits or role)
    internal_errors: int = 0  # received frames dropped because processing them failed
    peer_restarts: int = 0
    max_in_flight: int = 0  # most unacknowledged frames at once
    decode_errors: int = 0  # sum of the decoder's errors below
    crc_errors: int = 0
    cobs_errors: int = 0
    oversize_frames: int = 0
    short_frames: int = 0
    version_errors: int = 0
    length_errors: int = 0
    bad_bytes: int = 0


class _TxFrame:
    """A sequenced frame kept until acknowledged (times are when a write of it completed)."""

    __slots__ = ("msg_type", "flags", "payload", "sends", "first_sent", "last_sent")

    def __init__(self, msg_type: int, flags: int, payload: bytes) -> None:
        self.msg_type = msg_type
        self.flags = flags
        self.payload = payload
        self.sends = 0
        self.first_sent = 0.0
        self.last_sent = 0.0


class _Outgoing:
    """The encoded frame the writer is putting on the line, possibly over several writes."""

    __slots__ = ("data", "seq", "msg_type", "tx", "written")

    def __init__(self, data: bytes, frame: Frame, tx) -> None:
        self.data = memoryview(data)
        self.seq = frame.seq
        self.msg_type = frame.msg_type
        self.tx = tx
        self.written = 0

    def describe(self) -> str:
        what = message_type_name(self.msg_type)
        if self.tx is not None:
            what = f"seq {self.seq} ({what})"
        return f"{len(self.data) - self.written} of {len(self.data)} bytes of {what}"


class _Oversize:
    """Queue marker: a message that exceeded max_message was dropped."""

    def __init__(self, msg_type: int, size: int) -> None:
        self.msg_type = msg_type
        self.size = size


class Link:
    """One end of the reliable link over ``stream`` (anything ``transport.as_byte_stream`` takes).

    The host calls ``connect()``; the board may call ``announce()`` at start-up and then serves
    ``receive()`` / ``send()``. Threads start at construction; ``close()`` stops them.
    """

    def __init__(self, stream, config: LinkConfig | None = None, name: str = "link") -> None:
        self.config = config if config is not None else LinkConfig()
        self.config.check()
        self.name = name
        self._stream = as_byte_stream(stream)
        self._write_some = write_some
        self._decoder = FrameDecoder(self.config.max_payload)
        self._cond = threading.Condition(threading.Lock())
        self._send_lock = threading.Lock()
        self._stats = LinkStats()
        self._state = _IDLE
        self._session_id = new_session_id()
        self._peer_session = None
        self._peer = None
        self._peer_knows_us = False
        self._pending_exc = None
        self._hello_out = None  # echo session of a HELLO to send (0 = request)
        self._refusal_out = None  # payload of an ERROR refusing the peer's HELLO, to send
        self._last_refusal = -1e9
        self._last_announce = -1e9
        self._last_rx = time.monotonic()
        self._last_bad_frame = ""
        self._rto = self.config.retransmit_timeout(self.config.max_payload)
        self._epoch = 0
        self._outgoing = None  # _Outgoing being written (writer thread; read under the lock)
        self._building = False  # the writer picked a frame and is encoding it
        self._line_full_since = None  # when the line last stopped taking bytes, while it does
        self._reset_sequence_state()
        self._reader = threading.Thread(
            target=self._reader_loop, name=name + "-reader", daemon=True
        )
        self._writer = threading.Thread(
            target=self._writer_loop, name=name + "-writer", daemon=True
        )
        self._reader.start()
        self._writer.start()

    # ------------------------------------------------------------------ public API

    @property
    def stats(self) -> LinkStats:
        """A snapshot of the counters, decoder errors included."""
        with self._cond:
            stats = replace(self._stats)
        errors = self._decoder.errors
        stats.crc_errors = errors["crc"]
        stats.cobs_errors = errors["cobs"]
        stats.oversize_frames = errors["oversize"]
        stats.short_frames = errors["short"]
        stats.version_errors = errors["version"]
        stats.length_errors = errors["length"]
        stats.decode_errors = sum(errors.values())
        stats.bad_bytes = self._decoder.bad_bytes
        return stats

    @property
    def peer(self) -> PeerParams | None:
        """The peer's HELLO parameters, or None before a session exists."""
        with self._cond:
            return self._peer

    @property
    def connected(self) -> bool:
        """True when a session with the peer is established."""
        with self._cond:
            return self._state == _ESTABLISHED

    @property
    def session_id(self) -> int:
        """This end's current session id."""
        with self._cond:
            return self._session_id

    @property
    def session_epoch(self) -> int:
        """A number that changes whenever the sequence state is reset (a new or dropped session).

        A message received under one value belongs to that session; an application that keeps
        per-session state (a stream position, a partial upload) starts over when it changes.
        """
        with self._cond:
            return self._epoch

    @property
    def retransmit_timeout(self) -> float:
        """The base retransmission timeout in seconds (before backoff)."""
        with self._cond:
            return self._rto

    def connect(self, timeout: float | None = None) -> PeerParams:
        """Open a new session: send HELLO every RTO until the peer answers; returns its parameters.

        Without ``timeout`` it gives up after ``max_retries + 1`` HELLOs.
        """
        with self._cond:
            self._check_open()
            self._session_id = new_session_id()
            self._reset_sequence_state()
            self._peer_session = None
            self._peer = None
            self._peer_knows_us = False
            self._pending_exc = None
            self._state = _CONNECTING
            start = time.monotonic()
            limit = timeout if timeout is not None else self._rto * (self.config.max_retries + 1)
            attempts = 0
            next_hello = start
            while not (self._state == _ESTABLISHED and self._peer_knows_us):
                self._check_open()
                if isinstance(self._pending_exc, HandshakeRefused):
                    exc, self._pending_exc = self._pending_exc, None
                    self._state = _IDLE
                    self._peer_session = None
                    self._peer = None
                    self._reset_sequence_state()
                    raise exc
                now = time.monotonic()
                if now - start >= limit:
                    if self._state == _CONNECTING:
                        self._state = _IDLE
                    raise LinkTimeout(
                        "a HELLO reply from the peer",
                        now - start,
                        self._describe(
                            f"sent {attempts} HELLO; is the agent running on the other end?"
                        ),
                    )
                if now >= next_hello:
                    self._hello_out = 0
                    attempts += 1
                    next_hello = now + self._rto
                    self._cond.notify_all()
                self._cond.wait(max(0.001, min(next_hello, start + limit) - now))
            if isinstance(self._pending_exc, HandshakeRefused):
                self._pending_exc = None  # a valid HELLO reply came after all: it decides
            return self._peer

    def announce(self) -> None:
        """Send one HELLO request without waiting (a board does this at start-up)."""
        with self._cond:
            self._check_open()
            self._hello_out = 0
            self._last_announce = time.monotonic()
            self._cond.notify_all()

    def send(self, message: Message, timeout: float | None = None) -> None:
        """Queue a message for reliable delivery; blocks while the peer grants no credit.

        Returns once every fragment has a sequence number (not when it is acknowledged: see
        ``flush``). Raises NotConnected, PeerRestarted, LinkTimeout or LinkClosed.
        """
        msg_type = int(message.TYPE)
        if msg_type in LINK_TYPES:
            raise ValueError(
                f"{message_type_name(msg_type)} is link control, not a message to send"
            )
        payload = message.encode()
        with self._send_lock, self._cond:
            self._raise_pending()
            self._require_session()
            peer = self._peer
            if len(payload) > peer.max_message:
                raise MessageError(
                    f"{message_type_name(msg_type)} of {len(payload)} bytes exceeds "
                    f"the peer's max message size {peer.max_message}",
                    msg_type,
                )
            size = peer.max_payload
            pieces = [payload[i : i + size] for i in range(0, len(payload), size)] or [b""]
            epoch = self._epoch
            start = time.monotonic()
            for index, piece in enumerate(pieces):
                while seq_diff(self._next_seq, self._peer_edge) >= 0:
                    if self._credit_wait_since is None:
                        self._credit_wait_since = time.monotonic()
                        self._cond.notify_all()
                    self._wait_step(
                        epoch,
                        start,
                        timeout,
                        lambda: (
                            f"credit from the peer to send {message_type_name(msg_type)} "
                            f"({self._window_text()})"
                        ),
                    )
                self._credit_wait_since = None
                flags = FLAG_MORE if index < len(pieces) - 1 else 0
                self._unacked[self._next_seq] = _TxFrame(msg_type, flags, piece)
                self._next_seq = (self._next_seq + 1) & 0xFFFF
                in_flight = seq_diff(self._next_seq, self._send_base)
                if in_flight > self._stats.max_in_flight:
                    self._stats.max_in_flight = in_flight
                self._cond.notify_all()
            self._stats.messages_sent += 1

    def flush(self, timeout: float | None = None) -> None:
        """Wait until the peer acknowledged every frame sent so far."""
        with self._cond:
            self._raise_pending()
            self._require_session()
            epoch = self._epoch
            start = time.monotonic()
            while self._unacked:
                self._wait_step(
                    epoch,
                    start,
                    timeout,
                    lambda: (
                        f"acknowledgement of {len(self._unacked)} frames from seq {self._send_base}"
                    ),
                )

    def receive(self, timeout: float | None = None) -> Message:
        """Next message from the peer, in order and exactly once (waits up to ``timeout``)."""
        msg_type, payload = self.receive_raw(timeout)
        return decode_message(msg_type, payload)

    def receive_raw(self, timeout: float | None = None):
        """Next message as ``(type byte, payload bytes)`` without decoding it."""
        with self._cond:
            start = time.monotonic()
            while True:
                self._raise_pending()
                if self._rx_queue:
                    item = self._rx_queue.popleft()
                    if (
                        seq_diff(self._adv_edge, self._rx_expected) <= 0
                        and self._state == _ESTABLISHED
                    ):
                        self._ack_pending = True  # the peer saw a closed window: reopen it
                        self._cond.notify_all()
                    if isinstance(item, _Oversize):
                        raise MessageError(
                            f"{message_type_name(item.msg_type)} of {item.size}+ bytes "
                            f"exceeded this end's max message size {self.config.max_message} "
                            "and was dropped",
                            item.msg_type,
                        )
                    return item
                if self._state == _CLOSED:
                    raise LinkClosed(f"{self.name}: the byte stream is closed")
                elapsed = time.monotonic() - start
                if timeout is not None and elapsed >= timeout:
                    raise LinkTimeout("a message from the peer", elapsed, self._describe())
                self._cond.wait(0.05 if timeout is None else min(0.05, timeout - elapsed))

    def close(self, close_stream: bool = False, ack_wait: float | None = None) -> None:
        """Send the ACK this end owes, then stop both threads (and close the stream if asked).

        Without that last ACK a peer whose final frames (an INFO, an UPLOAD_DONE) were taken
        but not yet acknowledged would resend them until it gave up and dropped its session.
        ``ack_wait`` bounds the wait for the ACK to leave (default: one RTO). The link cannot
        be reused.
        """
        with self._cond:
            if self._state == _ESTABLISHED and (
                self._ack_pending or self._last_ack_sent != self._rx_expected
            ):
                self._ack_pending = True
                self._cond.notify_all()
                deadline = time.monotonic() + (self._rto if ack_wait is None else ack_wait)
                while self._state == _ESTABLISHED and (
                    self._ack_pending
                    or self._last_ack_sent != self._rx_expected
                    or self._building
                    or self._outgoing is not None
                ):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(min(0.02, left))
            if self._state != _CLOSED:
                self._state = _CLOSED
            self._cond.notify_all()
        for thread in (self._reader, self._writer):
            if thread is not threading.current_thread():
                thread.join(timeout=2.0)
        if close_stream:
            self._stream.close()

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ------------------------------------------------------------------ state (lock held)

    def _reset_sequence_state(self) -> int:
        lost = len(getattr(self, "_rx_queue", ())) + len(getattr(self, "_unacked", ()))
        self._epoch += 1
        self._next_seq = 0
        self._send_base = 0
        self._send_cursor = 0
        self._unacked = collections.OrderedDict()
        self._peer_edge = 0
        self._retries = 0
        self._backoff = 1
        self._timer_start = time.monotonic()
        self._resend_oldest = False
        self._recovering = False
        self._credit_wait_since = None
        self._last_poll = 0.0
        self._polls_unanswered = 0
        self._rx_expected = 0
        self._rx_queue = collections.deque()
        self._assembly_type = None
        self._assembly = None
        self._assembly_dropped = 0
        self._ack_pending = False
        self._nak_pending = False
        self._poll_pending = False
        self._last_nak = (None, 0.0)
        self._adv_edge = 0
        self._last_ack_sent = 0  # the ack field of the last frame built (nothing owed at 0)
        return lost

    def _check_open(self) -> None:
        if self._state == _CLOSED:
            raise LinkClosed(f"{self.name}: the link is closed")

    def _require_session(self) -> None:
        self._check_open()
        if self._state != _ESTABLISHED:
            raise NotConnected(
                f"{self.name}: no session with the peer "
                "(call connect() on the host, or wait for its HELLO)"
            )

    def _raise_pending(self) -> None:
        if self._pending_exc is not None:
            exc = self._pending_exc
            self._pending_exc = None
            raise exc

    def _wait_step(self, epoch: int, start: float, timeout, describe) -> None:
        """One bounded wait inside send/flush; raises if the session changed or time ran out."""
        if self._epoch != epoch:
            self._raise_pending()
            self._require_session()
            raise PeerRestarted(f"{self.name}: the session was reset while sending")
        self._raise_pending()
        self._check_open()
        elapsed = time.monotonic() - start
        if timeout is not None and elapsed >= timeout:
            raise LinkTimeout(describe(), elapsed, self._describe())
        self._cond.wait(0.05 if timeout is None else min(0.05, timeout - elapsed))
        if self._epoch != epoch:
            self._raise_pending()
            self._require_session()
            raise PeerRestarted(f"{self.name}: the session was reset while sending")

    def _window_text(self) -> str:
        return (
            f"peer acknowledged up to seq {self._send_base} "
            f"and granted credit up to seq {self._peer_edge}"
        )

    def _line_stall(self, now: float) -> str:
        """What the writer waits to write when the line has taken no bytes for a while, or ""."""
        out = self._outgoing
        if out is None or self._line_full_since is None:
            return ""
        return (
            f"the line has taken no bytes for {now - self._line_full_since:.2f} s with "
            f"{out.describe()} waiting: the peer stopped reading"
        )

    def _describe(self, extra: str = "") -> str:
        s = self._stats
        errors = sorted((kind, count) for kind, count in self._decoder.errors.items() if count)
        parts = [
            f"{self.name}: {self._state}",
            f"sent {s.frames_sent} frames ({s.resends} resent), received {s.frames_received}",
        ]
        if errors:
            parts.append("decode errors " + ", ".join(f"{kind}={count}" for kind, count in errors))
        if self._last_bad_frame:
            parts.append("last bad frame: " + self._last_bad_frame)
        stall = self._line_stall(time.monotonic())
        if stall:
            parts.append(stall)
        if extra:
            parts.append(extra)
        return "; ".join(parts)

    def _fail(self, exc: Exception) -> None:
        """Drop the session after an unrecoverable error; the next API call raises ``exc``."""
        self._pending_exc = exc
        self._state = _IDLE
        self._peer_session = None
        self._peer_knows_us = False
        self._session_id = new_session_id()  # a peer that kept our old session must reset too
        self._reset_sequence_state()
        self._cond.notify_all()

    def _closed_by_stream(self, exc: BaseException) -> None:
        with self._cond:
            if self._state != _CLOSED:
                what = "" if isinstance(exc, StreamClosed) else "byte stream failed: "
                self._pending_exc = LinkClosed(f"{self.name}: {what}{exc}")
                self._state = _CLOSED
            self._cond.notify_all()

    # ------------------------------------------------------------------ receiving (reader thread)

    def _reader_loop(self) -> None:
        stream = self._stream
        while True:
            with self._cond:
                if self._state == _CLOSED:
                    return
            try:
                data = stream.read(65536)
            except (OSError, EOFError, ValueError, LinkClosed) as exc:
                self._closed_by_stream(exc)
                return
            if not data:
                continue
            try:
                events = self._decoder.feed(data)
            except Exception as exc:  # a decoder bug must not end the reader: resynchronise
                self._decoder.reset()
                events = []
                with self._cond:
                    self._last_bad_frame = f"decoder failed: {type(exc).__name__}: {exc}"
            with self._cond:
                self._stats.bytes_received += len(data)
                for event in events:
                    try:
                        if isinstance(event, DecodeError):
                            self._on_decode_error(event)
                        else:
                            self._on_frame(event)
                    except Exception as exc:  # same: drop the frame, keep the link alive
                        self._stats.internal_errors += 1
                        self._last_bad_frame = (
                            f"frame {message_type_name(getattr(event, 'msg_type', 0))} could "
                            f"not be processed: {type(exc).__name__}: {exc}"
                        )
                self._cond.notify_all()

    def _on_decode_error(self, error) -> None:
        if error.kind == "version":
            self._last_bad_frame = error.detail
        if self._state == _ESTABLISHED:
            self._request_nak()  # a damaged frame may have been the one we expect: ask again

    def _request_nak(self) -> None:
        expected, when = self._last_nak
        now = time.monotonic()
        if expected == self._rx_expected and now - when < self._rto:
            return  # one NAK per hole per RTO
        self._last_nak = (self._rx_expected, now)
        self._nak_pending = True

    def _on_frame(self, frame: Frame) -> None:
        self._stats.frames_received += 1
        self._last_rx = time.monotonic()
        self._polls_unanswered = 0
        if frame.msg_type == MessageType.HELLO:
            self._on_hello(frame)
            return
        if (
            frame.msg_type == MessageType.ERROR
            and len(frame.payload) > 2
            and frame.payload[2] == MessageType.HELLO
        ):  # a refusal of our HELLO: never sequenced, whatever our state
            if self._state == _CONNECTING:
                self._on_refusal(frame)
            else:
                self._last_bad_frame = "a HELLO refusal outside a connect attempt"
            return
        if self._state != _ESTABLISHED:
            self._stats.frames_without_session += 1
            now = time.monotonic()
            if self._state == _IDLE and now - self._last_announce >= self._rto:
                self._hello_out = 0  # tell the peer we have no session so it resynchronises
                self._last_announce = now
            return
        self._on_ack_fields(frame.ack, frame.credit)
        if frame.msg_type == MessageType.ACK:
            if frame.flags & FLAG_POLL:
                self._ack_pending = True
            return
        if frame.msg_type == MessageType.NAK:
            self._on_nak(frame.ack)
            return
        self._on_data(frame)

    def _on_hello(self, frame: Frame) -> None:
        try:
            hello = Hello.parse(frame.payload)
            problem = hello.problem()
        except MessageError as exc:
            hello, problem = None, (ErrorCode.BAD_HELLO, str(exc))
        if problem is None and hello.role == self.config.role:
            role = ROLE_NAMES[hello.role]
            problem = (
                ErrorCode.BAD_HELLO,
                f"HELLO: role {hello.role} ({role}) is this end's own role; a {role} "
                f"talks to a {ROLE_NAMES[1 - hello.role]}",
            )
        if problem is not None:
            self._refuse_hello(hello, problem)
            return
        if hello.echo_session not in (0, self._session_id):
            return  # a reply to an earlier connect attempt
        if hello.session_id != self._peer_session:
            if self._state == _ESTABLISHED and self._peer_session is not None:
                lost = len(self._rx_queue) + len(self._unacked)
                self._pending_exc = PeerRestarted(
                    f"{self.name}: the peer started a new session (it restarted or reconnected); "
                    f"{lost} queued messages or unacknowledged frames were dropped",
                    lost,
                )
                self._stats.peer_restarts += 1
            self._reset_sequence_state()
            self._peer_session = hello.session_id
            self._peer = PeerParams(
                hello.session_id,
                hello.role,
                hello.max_payload,
                hello.max_message,
                hello.window,
                hello.protocol_version,
            )
            self._peer_edge = hello.window
            self._rto = self.config.retransmit_timeout(hello.max_payload)
            self._peer_knows_us = False
            self._state = _ESTABLISHED
        if hello.echo_session == self._session_id:
            self._peer_knows_us = True
        if hello.echo_session == 0:
            self._hello_out = hello.session_id

    def _refuse_hello(self, hello, problem) -> None:
        """Answer a HELLO this end cannot accept with a refusal ERROR; keep any session.

        While connecting, the refusal also ends ``connect()`` with HandshakeRefused at once
        (a peer with other limits or another version will not answer differently later).
        """
        code, text = problem
        self._stats.hellos_refused += 1
        self._last_bad_frame = text
        now = time.monotonic()
        if now - self._last_refusal >= self._rto:  # at most one refusal per RTO
            self._last_refusal = now
            self._refusal_out = ErrorReply(code, text, int(MessageType.HELLO)).encode()
        if self._state == _CONNECTING and (
            hello is None or hello.echo_session in (0, self._session_id)
        ):
            self._pending_exc = HandshakeRefused(code, text, by_peer=False)

    def _on_refusal(self, frame: Frame) -> None:
        """An ERROR outside a session: the peer refused our HELLO (docs/protocol.md 2.3)."""
        try:
            error = ErrorReply.decode(frame.payload)
        except MessageError as exc:
            self._last_bad_frame = str(exc)
            return
        if error.request_type == MessageType.HELLO:
            self._pending_exc = HandshakeRefused(error.code, error.text, by_peer=True)

    def _on_ack_fields(self, ack: int, credit: int) -> None:
        if seq_diff(ack, self._next_seq) > 0:
            self._stats.bad_acks += 1  # acknowledges frames never sent: ignore the header
            return
        if seq_diff(ack, self._send_base) > 0:
            while self._unacked and seq_diff(next(iter(self._unacked)), ack) < 0:
                self._unacked.popitem(last=False)
            self._send_base = ack
            if seq_diff(self._send_cursor, ack) < 0:
                self._send_cursor = ack
            elif self._recovering:
                # The receiver dropped the frames after the lost one: resend them, in order.
                self._send_cursor = ack
            self._recovering = False
            self._resend_oldest = False
            self._retries = 0
            self._backoff = 1
            self._timer_start = time.monotonic()
        elif seq_diff(ack, self._send_base) < 0:
            return  # an old ack: its credit is old too
        edge = (ack + credit) & 0xFFFF
        if seq_diff(edge, self._peer_edge) > 0:
            self._peer_edge = edge

    def _on_nak(self, expected: int) -> None:
        self._stats.naks_received += 1
        if not self._unacked or expected != self._send_base or self._resend_oldest:
            return  # nothing to resend, a stale NAK, or the resend is already due
        if self._unacked[self._send_base].sends:
            self._recover("NAK")

    def _recover(self, why: str) -> None:
        """A frame was lost (NAK or timeout): resend the oldest unacknowledged frame alone.

        New frames wait until it is acknowledged; then the frames after it, which the receiver
        dropped, are resent in order (see ``_on_ack_fields``). Resending one frame, not a
        burst, makes each attempt independent of the last, so faults that recur every N frames
        cannot hit every attempt. Gives up after ``max_retries`` resends without progress.
        """
        now = time.monotonic()
        self._retries += 1
        if self._retries > self.config.max_retries:
            oldest = self._unacked[self._send_base]
            name = message_type_name(oldest.msg_type)
            waited = now - (oldest.first_sent or self._timer_start)
            stall = self._line_stall(now)
            waiting_for = f"an ACK of seq {self._send_base} ({name})"
            attempts = f"{self.config.max_retries} retransmissions, last after a {why}"
            if stall:
                waiting_for = f"the peer to read the line and send {waiting_for}"
                attempts = f"{self.config.max_retries} retransmission timeouts with the line full"
            self._fail(LinkTimeout(waiting_for, waited, self._describe(attempts)))
            return
        self._recovering = True
        self._resend_oldest = True
        self._timer_start = now

    def _on_data(self, frame: Frame) -> None:
        distance = seq_diff(frame.seq, self._rx_expected)
        if distance < 0:
            self._stats.duplicates += 1
            self._ack_pending = True  # our ACK was lost: acknowledge again, deliver nothing
            return
        if distance > 0:
            self._stats.out_of_order += 1
            self._request_nak()
            return
        final = not frame.flags & FLAG_MORE
        if final and len(self._rx_queue) >= self.config.window:
            self._stats.window_violations += 1  # beyond the credit we granted: drop, no ACK
            return
        self._rx_expected = (self._rx_expected + 1) & 0xFFFF
        self._ack_pending = True
        self._deliver_fragment(frame.msg_type, frame.payload, final)

    def _deliver_fragment(self, msg_type: int, payload: bytes, final: bool) -> None:
        """Append an in-order fragment to the message being reassembled; queue it when final."""
        assembling = self._assembly is not None or self._assembly_dropped
        if assembling and msg_type != self._assembly_type:
            self._stats.bad_fragments += 1  # a new message began before the last one ended
            self._assembly = None
            self._assembly_dropped = 0
            assembling = False
        if not assembling:
            if final:
                self._queue_message(msg_type, bytes(payload))
                return
            self._assembly_type = msg_type
            self._assembly = bytearray()
        if self._assembly_dropped:
            self._assembly_dropped += len(payload)
        else:
            self._assembly += payload
            if len(self._assembly) > self.config.max_message:
                self._assembly_dropped = len(self._assembly)  # stop buffering, keep counting
                self._assembly = None
        if final:
            if self._assembly_dropped:
                self._stats.oversize_messages += 1
                self._rx_queue.append(_Oversize(msg_type, self._assembly_dropped))
            else:
                self._queue_message(msg_type, bytes(self._assembly))
            self._assembly = None
            self._assembly_dropped = 0

    def _queue_message(self, msg_type: int, payload: bytes) -> None:
        self._rx_queue.append((msg_type, payload))
        self._stats.messages_received += 1

    # ------------------------------------------------------------------ sending (writer thread)

    def _writer_loop(self) -> None:
        tick = min(0.02, self.config.ack_timeout / 4.0)
        while True:
            with self._cond:
                while True:
                    if self._state == _CLOSED:
                        return
                    self._check_timers(time.monotonic())
                    out = self._outgoing
                    if out is not None:
                        break
                    picked = self._next_frame()
                    if picked is not None:
                        self._building = True  # picked, not yet ``_outgoing``: close() waits
                        break
                    self._cond.wait(tick)
            if out is None:
                frame, tx = picked
                out = _Outgoing(encode_frame(frame), frame, tx)
                with self._cond:
                    self._outgoing = out
                    self._building = False
            # Never block longer than a tick: the timers above must keep running while the
            # peer does not read (a full line), so a stalled peer ends in a LinkTimeout.
            try:
                written = self._write_some(self._stream, out.data[out.written :], tick)
            except (OSError, ValueError, LinkClosed) as exc:
                self._closed_by_stream(exc)
                return
            with self._cond:
                now = time.monotonic()
                if written:
                    out.written += written
                    self._stats.bytes_sent += written
                    self._line_full_since = None
                elif self._line_full_since is None:
                    self._line_full_since = now
                if out.written < len(out.data):
                    continue
                self._outgoing = None
                self._stats.frames_sent += 1
                tx = out.tx
                if tx is not None:
                    tx.last_sent = now
                    if not tx.first_sent:
                        tx.first_sent = now
                    if out.seq == self._send_base and self._unacked.get(out.seq) is tx:
                        self._timer_start = now  # the timer runs from the oldest's last send

    def _check_timers(self, now: float) -> None:
        if self._state != _ESTABLISHED:
            return
        if self._unacked:
            oldest = self._unacked[self._send_base]
            timeout = self._rto * self._backoff
            if oldest.sends and now - self._timer_start > timeout:
                self._stats.timeouts += 1
                self._backoff = min(MAX_BACKOFF, self._backoff * 2)
                self._recover("timeout")
            return
        if (
            self._credit_wait_since is not None
            and now - max(self._credit_wait_since, self._last_poll) > self._rto
        ):
            if self._polls_unanswered >= self.config.max_retries:
                self._fail(
                    LinkTimeout(
                        "an answer to a window probe",
                        now - self._last_rx,
                        self._describe(
                            "the peer granted no credit and answered none of "
                            f"{self._polls_unanswered} polls"
                        ),
                    )
                )
                return
            self._poll_pending = True
            self._last_poll = now
            self._polls_unanswered += 1

    def _ack_fields(self):
        credit = max(0, min(255, self.config.window - len(self._rx_queue)))
        self._adv_edge = (self._rx_expected + credit) & 0xFFFF
        self._last_ack_sent = self._rx_expected
        return self._rx_expected, credit

    def _next_frame(self):
        """Pick the next frame to write (lock held): HELLO, NAK, the oldest frame when it is to be
        resent, data at the cursor (not while recovering a loss), or ACK."""
        if self._hello_out is not None:
            echo = self._hello_out
            self._hello_out = None
            hello = Hello(
                self._session_id,
                echo,
                self.config.role,
                self.config.max_payload,
                self.config.max_message,
                self.config.window,
            )
            self._stats.hellos_sent += 1
            return Frame(MessageType.HELLO, 0, self.config.window, 0, 0, hello.encode()), None
        if self._refusal_out is not None:
            payload, self._refusal_out = self._refusal_out, None
            return Frame(MessageType.ERROR, 0, 0, 0, 0, payload), None
        if self._state != _ESTABLISHED:
            return None
        if self._nak_pending:
            self._nak_pending = False
            self._ack_pending = False
            ack, credit = self._ack_fields()
            self._stats.naks_sent += 1
            return Frame(MessageType.NAK, 0, credit, self._next_seq, ack, b""), None
        seq = None
        if self._resend_oldest:
            self._resend_oldest = False
            seq = self._send_base
            if seq_diff(self._send_cursor, seq) <= 0:
                self._send_cursor = (seq + 1) & 0xFFFF
        elif self._send_cursor != self._next_seq and not self._recovering:
            seq = self._send_cursor
            self._send_cursor = (seq + 1) & 0xFFFF
        if seq is not None:
            tx = self._unacked[seq]
            if tx.sends:
                self._stats.resends += 1
            else:
                self._stats.data_frames_sent += 1
            tx.sends += 1
            self._ack_pending = False
            ack, credit = self._ack_fields()
            return Frame(tx.msg_type, tx.flags, credit, seq, ack, tx.payload), tx
        if self._ack_pending or self._poll_pending:
            flags = FLAG_POLL if self._poll_pending else 0
            if self._poll_pending:
                self._stats.polls_sent += 1
            else:
                self._stats.acks_sent += 1
            self._ack_pending = False
            self._poll_pending = False
            ack, credit = self._ack_fields()
            return Frame(MessageType.ACK, flags, credit, self._next_seq, ack, b""), None
        return None


def board_config(**overrides) -> LinkConfig:
    """A LinkConfig for the board end (role BOARD), with any field overridden."""
    overrides.setdefault("role", ROLE_BOARD)
    return LinkConfig(**overrides)
