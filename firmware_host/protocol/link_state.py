"""The reliable link's protocol state machine (docs/protocol.md), without threads or I/O.

``LinkMachine`` holds one end's session, sequence numbers, send window and credits, receive
queue and reassembly, and the retransmission timers. Received frames go in through
``_on_frame`` (and ``_on_decode_error``); the next frame to put on the line comes out of
``_next_frame``, and ``_check_timers`` runs the timers. Every method expects the caller to
hold ``_cond``; :class:`firmware_host.protocol.link.Link` drives it from its reader and
writer threads over a byte stream. Board-safe (Python 3.7).
"""

from __future__ import annotations

import collections
import threading
import time

from .errors import (
    HandshakeRefused,
    LinkTimeout,
    MessageError,
    PeerRestarted,
)
from .framing import (
    FLAG_MORE,
    FLAG_POLL,
    Frame,
    FrameDecoder,
)
from .link_config import (
    MAX_BACKOFF,
    LinkConfig,
    LinkStats,
    PeerParams,
    new_session_id,
    seq_diff,
)
from .messages import (
    ROLE_NAMES,
    ErrorCode,
    ErrorReply,
    Hello,
    MessageType,
    message_type_name,
)

IDLE = "idle"  # no session (never connected, or dropped after a failure)
CONNECTING = "connecting"  # connect() sent HELLO and waits for the reply
ESTABLISHED = "established"
CLOSED = "closed"


class TxFrame:
    """A sequenced frame kept until acknowledged (times are when a write of it completed)."""

    __slots__ = ("msg_type", "flags", "payload", "sends", "first_sent", "last_sent")

    def __init__(self, msg_type: int, flags: int, payload: bytes) -> None:
        self.msg_type = msg_type
        self.flags = flags
        self.payload = payload
        self.sends = 0
        self.first_sent = 0.0
        self.last_sent = 0.0


class Outgoing:
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


class Oversize:
    """Queue marker: a message that exceeded max_message was dropped."""

    def __init__(self, msg_type: int, size: int) -> None:
        self.msg_type = msg_type
        self.size = size


class LinkMachine:
    """One end's link state and its transitions (see the module docstring)."""

    def __init__(self, config: LinkConfig | None = None, name: str = "link") -> None:
        self.config = config if config is not None else LinkConfig()
        self.config.check()
        self.name = name
        self._decoder = FrameDecoder(self.config.max_payload)
        self._cond = threading.Condition(threading.Lock())
        self._stats = LinkStats()
        self._state = IDLE
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
        self._outgoing = None  # Outgoing being written (writer thread; read under the lock)
        self._building = False  # the writer picked a frame and is encoding it
        self._line_full_since = None  # when the line last stopped taking bytes, while it does
        self._reset_sequence_state()


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
        self._state = IDLE
        self._peer_session = None
        self._peer_knows_us = False
        self._session_id = new_session_id()  # a peer that kept our old session must reset too
        self._reset_sequence_state()
        self._cond.notify_all()

    def _on_decode_error(self, error) -> None:
        if error.kind == "version":
            self._last_bad_frame = error.detail
        if self._state == ESTABLISHED:
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
            if self._state == CONNECTING:
                self._on_refusal(frame)
            else:
                self._last_bad_frame = "a HELLO refusal outside a connect attempt"
            return
        if self._state != ESTABLISHED:
            self._stats.frames_without_session += 1
            now = time.monotonic()
            if self._state == IDLE and now - self._last_announce >= self._rto:
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
            if self._state == ESTABLISHED and self._peer_session is not None:
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
            self._state = ESTABLISHED
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
        if self._state == CONNECTING and (
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
                self._rx_queue.append(Oversize(msg_type, self._assembly_dropped))
            else:
                self._queue_message(msg_type, bytes(self._assembly))
            self._assembly = None
            self._assembly_dropped = 0

    def _queue_message(self, msg_type: int, payload: bytes) -> None:
        self._rx_queue.append((msg_type, payload))
        self._stats.messages_received += 1

    def _check_timers(self, now: float) -> None:
        if self._state != ESTABLISHED:
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
        if self._state != ESTABLISHED:
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
