"""Host side requests to a board agent: info, reset, ping, audio streaming, tensor mode, upload.

Replies come back in request order (the link delivers in order and the agent answers in
order), so each helper sends and reads the matching reply; an ERROR reply raises PeerError.
The client counts the replies still owed in the current session: when a request fails while
others are in flight (an ERROR for one of several pipelined audio chunks, a reply that came
too late), the replies still owed are read and discarded before the next request, so every
reply is matched to its own request exactly once.
"""

from __future__ import annotations

import collections
import hashlib
import time

import numpy as np

from firmware_host.protocol.errors import HandshakeRefused, PeerError, ProtocolError
from firmware_host.protocol.framing import PROTOCOL_VERSION
from firmware_host.protocol.link import Link
from firmware_host.protocol.messages import (
    AudioChunk,
    ErrorCode,
    ErrorReply,
    GetInfo,
    Info,
    Message,
    MessageType,
    Ok,
    Ping,
    Pong,
    ResetState,
    SeparatedChunk,
    TensorIn,
    TensorOut,
    UploadBegin,
    UploadChunk,
    UploadDone,
    UploadEnd,
    message_type_name,
)

DEFAULT_REPLY_TIMEOUT = 10.0
DEFAULT_OUTSTANDING = 4  # audio chunks in flight while streaming


def _peer_error(reply: ErrorReply) -> PeerError:
    return PeerError(reply.code, reply.text, reply.request_type)


class BoardClient:
    """Request/response helpers over a connected (or connectable) host ``Link``."""

    def __init__(self, link: Link, timeout: float = DEFAULT_REPLY_TIMEOUT) -> None:
        self.link = link
        self.timeout = timeout
        self._owed = 0  # replies the board still owes for requests already sent
        self._owed_epoch = None  # the link session those replies belong to
        self.discarded = 0  # stale replies read and dropped so far

    def connect(self, timeout: float | None = None) -> Info:
        """Open a session (HELLO) and return the board's INFO.

        From then on a reply is awaited at least as long as the link keeps resending before
        it gives up (at 115200 baud ~41 s), so a slow line is not taken for a stalled board.
        """
        peer = self.link.connect(timeout)
        self._owed = 0
        self.timeout = max(self.timeout, self.link.config.give_up_time(peer.max_payload))
        return self.info()

    @property
    def owed(self) -> int:
        """Replies still owed by the board in the current session (0 once settled)."""
        if self._owed_epoch != self.link.session_epoch:
            return 0
        return self._owed

    def _sent(self) -> None:
        """Count one more reply owed (the request was handed to the link)."""
        epoch = self.link.session_epoch
        if self._owed_epoch != epoch:
            self._owed_epoch = epoch
            self._owed = 0
        self._owed += 1

    def _receive(self, wait: float, settles: bool = True) -> Message:
        """The next reply; it settles one owed reply (an ERROR to an UPLOAD_CHUNK is extra, and
        so is a later part of a reply sent in parts: ``settles`` False)."""
        reply = self.link.receive(wait)
        if settles and not (isinstance(reply, ErrorReply)
                            and reply.request_type == MessageType.UPLOAD_CHUNK):
            self._owed = max(0, self._owed - 1)
        return reply

    def settle(self, timeout: float | None = None) -> int:
        """Read and discard the replies still owed to earlier requests; returns how many.

        Called before every request. A reply that never comes raises the link's LinkTimeout
        (the session is then in doubt: reconnect); a new session owes nothing.
        """
        wait = self.timeout if timeout is None else timeout
        dropped = 0
        while self.owed > 0:
            self._receive(wait)
            dropped += 1
        self.discarded += dropped
        return dropped

    def _expect(self, reply: Message, cls, request_type: int):
        if isinstance(reply, ErrorReply):
            if reply.request_type not in (0, request_type):
                raise ProtocolError(
                    f"ERROR {reply.code:#06x} for {message_type_name(reply.request_type)} "
                    f"in reply to {message_type_name(request_type)}: replies out of step "
                    f"({reply.text})"
                )
            raise _peer_error(reply)
        if not isinstance(reply, cls):
            raise ProtocolError(
                f"expected {message_type_name(cls.TYPE)} in reply to "
                f"{message_type_name(request_type)}, got {message_type_name(reply.TYPE)}"
            )
        return reply

    def request(self, message: Message, reply_cls, timeout: float | None = None):
        """Send ``message`` and return its reply of class ``reply_cls`` (ERROR raises PeerError)."""
        wait = self.timeout if timeout is None else timeout
        self.settle(wait)
        self.link.send(message, wait)
        self._sent()
        return self._expect(self._receive(wait), reply_cls, int(message.TYPE))

    def info(self) -> Info:
        """What runs on the board: agent, runtime, delegate, model sha256 and manifest.

        An INFO of another protocol version raises HandshakeRefused (UNSUPPORTED_VERSION).
        """
        info = self.request(GetInfo(), Info)
        if info.protocol_version != PROTOCOL_VERSION:
            raise HandshakeRefused(
                ErrorCode.UNSUPPORTED_VERSION,
                f"INFO: protocol_version {info.protocol_version} is not supported, "
                f"this end speaks {PROTOCOL_VERSION}",
                by_peer=False,
            )
        return info

    def reset_state(self) -> None:
        """Zero the board's streaming state; the next audio chunk starts at position 0."""
        reply = self.request(ResetState(), Ok)
        if reply.request_type != MessageType.RESET_STATE:
            raise ProtocolError(
                f"OK for {message_type_name(reply.request_type)} in reply to RESET_STATE"
            )

    def ping(self, data: bytes = b"") -> float:
        """Round-trip time of a PING carrying ``data``, in seconds."""
        nonce = int(time.monotonic() * 1e6) & 0xFFFFFFFF
        start = time.monotonic()
        reply = self.request(Ping(nonce, data), Pong)
        if reply.nonce != nonce or reply.data != bytes(data):
            raise ProtocolError(
                f"PONG does not echo the PING (nonce {reply.nonce}, {len(reply.data)} bytes)"
            )
        return time.monotonic() - start

    def separate(self, chunk: AudioChunk) -> SeparatedChunk:
        """Separate one audio chunk (lock-step); a reply the board sends in parts is joined."""
        wait = self.timeout
        self.settle(wait)
        self.link.send(chunk, wait)
        self._sent()
        return self._separated(chunk.position, int(chunk.samples.size), wait)

    def stream(
        self, chunks, max_outstanding: int = DEFAULT_OUTSTANDING, timeout: float | None = None
    ):
        """Separate an iterable of AudioChunks, keeping a few in flight; yields replies in order.

        An ERROR for one chunk raises PeerError once the replies to the chunks sent after it
        were read and discarded, so the next request starts on a clean link.
        """
        wait = self.timeout if timeout is None else timeout
        self.settle(wait)
        peer = self.link.peer
        limit = max(1, min(max_outstanding, self.link.config.window, peer.window if peer else 1))
        pending = collections.deque()
        source = iter(chunks)
        exhausted = False
        while True:
            while not exhausted and len(pending) < limit:
                try:
                    chunk = next(source)
                except StopIteration:
                    exhausted = True
                    break
                self.link.send(chunk, wait)
                self._sent()
                pending.append((chunk.position, int(chunk.samples.size)))
            if not pending:
                return
            position, count = pending.popleft()
            yield self._separated(position, count, wait)

    def _separated(self, position: int, count: int, wait: float) -> SeparatedChunk:
        """The reply to the AUDIO_CHUNK of ``count`` samples at ``position``, its parts joined
        (a board sends a reply larger than the max message as consecutive parts)."""
        parts = []
        got = 0
        while True:
            try:
                reply = self._expect(self._receive(wait, settles=not parts), SeparatedChunk,
                                     MessageType.AUDIO_CHUNK)
            except PeerError:
                self.settle(wait)  # the chunks after the failed one are answered too: drop them
                raise
            if reply.position != position + got:
                raise ProtocolError(
                    f"SEPARATED_CHUNK for position {reply.position}, expected {position + got}"
                )
            size = int(reply.sources.shape[1])
            if size == 0 or (parts and reply.sources.shape[0] != parts[0].sources.shape[0]):
                raise ProtocolError(
                    f"SEPARATED_CHUNK part at {reply.position} has shape {reply.sources.shape}"
                )
            parts.append(reply)
            got += size
            if got >= count:
                break
        if len(parts) == 1:
            return parts[0]
        return SeparatedChunk(
            position,
            np.concatenate([p.sources for p in parts], axis=1),
            sum(p.invoke_us for p in parts),
            sum(p.n_invokes for p in parts),
        )

    def run_tensors(self, tensors) -> TensorOut:
        """Tensor mode: run the network once on raw inputs; returns raw outputs and invoke time."""
        return self.request(TensorIn(list(tensors)), TensorOut)

    def upload(self, data: bytes, chunk_size: int | None = None, progress=None) -> UploadDone:
        """Upload a model (BEGIN, pipelined CHUNKs, END); UPLOAD_DONE once the board swapped it in.

        ``progress(bytes_sent)`` is called after each chunk. A board error raises PeerError (the
        first one, e.g. a bad chunk, rather than the END that follows it).
        """
        data = bytes(data)
        digest = hashlib.sha256(data).digest()
        begun = self.request(UploadBegin(len(data), digest), Ok)
        if begun.request_type != MessageType.UPLOAD_BEGIN:
            raise ProtocolError(
                f"OK for {message_type_name(begun.request_type)} in reply to UPLOAD_BEGIN"
            )
        peer = self.link.peer
        size = chunk_size or max(1, (peer.max_payload if peer else 1024) - 4)
        for offset in range(0, len(data), size):
            self.link.send(UploadChunk(offset, data[offset : offset + size]), self.timeout)
            if progress is not None:
                progress(min(offset + size, len(data)))
        self.link.send(UploadEnd(), self.timeout)
        self._sent()
        first_error = None
        while True:
            reply = self._receive(self.timeout)
            if isinstance(reply, ErrorReply):
                first_error = first_error or reply
                if reply.request_type == MessageType.UPLOAD_END:
                    break
                continue
            if isinstance(reply, UploadDone):
                break
            raise ProtocolError(
                "expected UPLOAD_DONE or ERROR during an upload, got "
                + message_type_name(reply.TYPE)
            )
        if first_error is not None:
            raise _peer_error(first_error)
        if reply.sha256 != digest or reply.size != len(data):
            raise ProtocolError(
                f"UPLOAD_DONE reports {reply.size} bytes sha256 {reply.sha256.hex()}, "
                f"sent {len(data)} bytes sha256 {digest.hex()}"
            )
        return reply
