"""Host side requests to a board agent: info, reset, ping, audio streaming, tensor mode, upload.

Replies come back in request order (the link delivers in order and the agent answers in
order), so each helper sends and reads the matching reply; an ERROR reply raises PeerError.
"""

from __future__ import annotations

import collections
import hashlib
import time

from .errors import PeerError, ProtocolError
from .link import Link
from .messages import (
    AudioChunk,
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

    def connect(self, timeout: float | None = None) -> Info:
        """Open a session (HELLO) and return the board's INFO.

        From then on a reply is awaited at least as long as the link keeps resending before
        it gives up (at 115200 baud ~41 s), so a slow line is not taken for a stalled board.
        """
        peer = self.link.connect(timeout)
        self.timeout = max(self.timeout, self.link.config.give_up_time(peer.max_payload))
        return self.info()

    def _expect(self, reply: Message, cls, request_type: int):
        if isinstance(reply, ErrorReply):
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
        self.link.send(message, wait)
        return self._expect(self.link.receive(wait), reply_cls, int(message.TYPE))

    def info(self) -> Info:
        """What runs on the board: agent, runtime, delegate, model sha256 and manifest."""
        return self.request(GetInfo(), Info)

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
        """Separate one audio chunk (lock-step)."""
        reply = self.request(chunk, SeparatedChunk)
        if reply.position != chunk.position:
            raise ProtocolError(
                f"SEPARATED_CHUNK for position {reply.position}, sent {chunk.position}"
            )
        return reply

    def stream(
        self, chunks, max_outstanding: int = DEFAULT_OUTSTANDING, timeout: float | None = None
    ):
        """Separate an iterable of AudioChunks, keeping a few in flight; yields replies in order."""
        wait = self.timeout if timeout is None else timeout
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
                pending.append(chunk.position)
            if not pending:
                return
            reply = self._expect(self.link.receive(wait), SeparatedChunk, MessageType.AUDIO_CHUNK)
            position = pending.popleft()
            if reply.position != position:
                raise ProtocolError(
                    f"SEPARATED_CHUNK for position {reply.position}, expected {position}"
                )
            yield reply

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
        self.request(UploadBegin(len(data), digest), Ok)
        peer = self.link.peer
        size = chunk_size or max(1, (peer.max_payload if peer else 1024) - 4)
        for offset in range(0, len(data), size):
            self.link.send(UploadChunk(offset, data[offset : offset + size]), self.timeout)
            if progress is not None:
                progress(min(offset + size, len(data)))
        self.link.send(UploadEnd(), self.timeout)
        first_error = None
        while True:
            reply = self.link.receive(self.timeout)
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
