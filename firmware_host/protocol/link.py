"""Reliable link: exactly-once, in-order messages over a byte stream that corrupts, drops, stalls.

Both ends (host harness and board agent) run the same ``Link``. It frames messages
(fragmenting those larger than the peer's max payload), numbers them, recovers losses (on NAK
or timeout it resends the oldest unacknowledged frame alone, with backoff, and only once that
frame is acknowledged goes back to resend the frames after it), bounds the retransmissions of
each frame, acknowledges duplicates without delivering them twice, and sends a frame only when
the peer granted credit for it. A HELLO exchange opens a session; a HELLO with a new session id
from the peer means it restarted, which resets the sequence state and surfaces
``PeerRestarted`` once. Rules are specified in docs/protocol.md.

The protocol state machine is ``link_state.LinkMachine``; ``Link`` runs it over a byte stream
with two threads and offers the blocking API: a reader that decodes frames and updates state
(it never blocks on a write, so two links cannot deadlock on full buffers) and a writer that
owns the stream's write side, builds each frame with the current ack and credit, and runs the
timers. The writer hands
the stream a bounded ``write_some`` at a time, so a peer that stops reading cannot hold its
timers: the retransmissions run out and the link fails with a LinkTimeout saying so.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

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
    FLAG_MORE,
    DecodeError,
    encode_frame,
)
from .link_config import (
    DEFAULT_MAX_RETRIES,
    LinkConfig,
    LinkStats,
    PeerParams,
    board_config,
    new_session_id,
    seq_diff,
)
from .link_state import (
    CLOSED,
    CONNECTING,
    ESTABLISHED,
    IDLE,
    LinkMachine,
    Outgoing,
    Oversize,
    TxFrame,
)
from .messages import (
    LINK_TYPES,
    Message,
    decode_message,
    message_type_name,
)

# Longest a counters snapshot waits for a write in progress to be tallied (a write blocks at
# most one writer tick; this covers a busy machine's scheduling too).
STATS_WRITE_WAIT = 1.0

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "Link",
    "LinkConfig",
    "LinkStats",
    "PeerParams",
    "board_config",
    "seq_diff",
]


class Link(LinkMachine):
    """One end of the reliable link over ``stream`` (anything ``transport.as_byte_stream`` takes).

    The host calls ``connect()``; the board may call ``announce()`` at start-up and then serves
    ``receive()`` / ``send()``. Threads start at construction; ``close()`` stops them.
    """

    def __init__(self, stream, config: LinkConfig | None = None, name: str = "link") -> None:
        super().__init__(config, name)
        self._stream = as_byte_stream(stream)
        self._write_some = write_some
        self._writes_started = 0  # writes handed to the stream ...
        self._writes_counted = 0  # ... and those whose bytes are in the counters
        self._send_lock = threading.Lock()
        self._reader = threading.Thread(
            target=self._reader_loop, name=name + "-reader", daemon=True
        )
        self._writer = threading.Thread(
            target=self._writer_loop, name=name + "-writer", daemon=True
        )
        self._reader.start()
        self._writer.start()


    @property
    def stats(self) -> LinkStats:
        """A snapshot of the counters, decoder errors included.

        A write in progress when the snapshot is asked for is counted first: the peer may
        already have answered bytes the writer has not yet tallied.
        """
        with self._cond:
            pending = self._writes_started
            deadline = time.monotonic() + STATS_WRITE_WAIT
            while self._writes_counted < pending and self._state != CLOSED:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
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
            return self._state == ESTABLISHED

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
            self._state = CONNECTING
            start = time.monotonic()
            limit = timeout if timeout is not None else self._rto * (self.config.max_retries + 1)
            attempts = 0
            next_hello = start
            while not (self._state == ESTABLISHED and self._peer_knows_us):
                self._check_open()
                if isinstance(self._pending_exc, HandshakeRefused):
                    exc, self._pending_exc = self._pending_exc, None
                    self._state = IDLE
                    self._peer_session = None
                    self._peer = None
                    self._reset_sequence_state()
                    raise exc
                now = time.monotonic()
                if now - start >= limit:
                    if self._state == CONNECTING:
                        self._state = IDLE
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
                self._unacked[self._next_seq] = TxFrame(msg_type, flags, piece)
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
                        and self._state == ESTABLISHED
                    ):
                        self._ack_pending = True  # the peer saw a closed window: reopen it
                        self._cond.notify_all()
                    if isinstance(item, Oversize):
                        raise MessageError(
                            f"{message_type_name(item.msg_type)} of {item.size}+ bytes "
                            f"exceeded this end's max message size {self.config.max_message} "
                            "and was dropped",
                            item.msg_type,
                        )
                    return item
                if self._state == CLOSED:
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
            if self._state == ESTABLISHED and (
                self._ack_pending or self._last_ack_sent != self._rx_expected
            ):
                self._ack_pending = True
                self._cond.notify_all()
                deadline = time.monotonic() + (self._rto if ack_wait is None else ack_wait)
                while self._state == ESTABLISHED and (
                    self._ack_pending
                    or self._last_ack_sent != self._rx_expected
                    or self._building
                    or self._outgoing is not None
                ):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(min(0.02, left))
            if self._state != CLOSED:
                self._state = CLOSED
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

    def _check_open(self) -> None:
        if self._state == CLOSED:
            raise LinkClosed(f"{self.name}: the link is closed")

    def _require_session(self) -> None:
        self._check_open()
        if self._state != ESTABLISHED:
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

    def _closed_by_stream(self, exc: BaseException) -> None:
        with self._cond:
            if self._state != CLOSED:
                what = "" if isinstance(exc, StreamClosed) else "byte stream failed: "
                self._pending_exc = LinkClosed(f"{self.name}: {what}{exc}")
                self._state = CLOSED
            self._cond.notify_all()


    def _reader_loop(self) -> None:
        stream = self._stream
        while True:
            with self._cond:
                if self._state == CLOSED:
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


    def _writer_loop(self) -> None:
        tick = min(0.02, self.config.ack_timeout / 4.0)
        while True:
            with self._cond:
                while True:
                    if self._state == CLOSED:
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
                self._writes_started += 1  # this pass ends in one write, tallied below
            if out is None:
                frame, tx = picked
                out = Outgoing(encode_frame(frame), frame, tx)
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
                self._writes_counted += 1
                self._cond.notify_all()
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
