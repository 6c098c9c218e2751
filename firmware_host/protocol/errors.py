"""Exceptions of the wire protocol, from a malformed payload up to a peer that stopped answering.

Every exception says what was expected or waited for, so a lab operator can act on it.
"""

from __future__ import annotations

from .codes import error_code_name, message_type_name


class ProtocolError(Exception):
    """Base class of every wire-protocol error."""


class MessageError(ProtocolError):
    """A message payload that does not follow its layout (names the message and the field).

    Deliberately not a ValueError: bytes from a peer are a protocol fault, which a command
    must not take for a bad argument of its own.
    """

    def __init__(self, text: str, msg_type: int = 0) -> None:
        super().__init__(text)
        self.msg_type = msg_type


class LinkError(ProtocolError):
    """The reliable link cannot deliver: no session, timeout, peer restart or closed stream."""


class LinkTimeout(LinkError):
    """Nothing arrived in time; ``waiting_for`` says what, ``seconds`` how long we waited."""

    def __init__(self, waiting_for: str, seconds: float, detail: str = "") -> None:
        text = f"timed out after {seconds:.2f} s waiting for {waiting_for}"
        if detail:
            text += " (" + detail + ")"
        super().__init__(text)
        self.waiting_for = waiting_for
        self.seconds = seconds


class PeerRestarted(LinkError):
    """The peer started a new session (it restarted or reconnected); in-flight messages are gone.

    ``lost`` counts the queued messages and unacknowledged frames that were dropped.
    """

    def __init__(self, text: str, lost: int = 0) -> None:
        super().__init__(text)
        self.lost = lost


class NotConnected(LinkError):
    """No session with the peer yet: the host must call ``connect()`` first."""


class LinkClosed(LinkError):
    """The byte stream under the link was closed or failed; the link cannot be used again."""


class HandshakeRefused(LinkError):
    """A session could not be opened: one end refused the other's HELLO (or INFO).

    ``code`` is the ErrorCode (UNSUPPORTED_VERSION, BAD_HELLO); ``by_peer`` says whether the
    peer refused ours (it sent a refusal ERROR) or this end refused the peer's.
    """

    def __init__(self, code: int, text: str, by_peer: bool) -> None:
        self.code = code
        self.code_name = error_code_name(code)
        self.text = text
        self.by_peer = by_peer
        who = "the peer refused this end's" if by_peer else "this end refused the peer's"
        super().__init__(f"{who} handshake: {self.code_name} (0x{code:04x}): {text}")


class PeerError(ProtocolError):
    """The peer answered a request with an ERROR message."""

    def __init__(self, code: int, text: str, request_type: int = 0) -> None:
        self.code = code
        self.code_name = error_code_name(code)
        self.text = text
        self.request_type = request_type
        where = f" to {message_type_name(request_type)}" if request_type else ""
        super().__init__(f"peer error {self.code_name} (0x{code:04x}){where}: {text}")


class RequestRejected(ProtocolError):
    """Raised by board-side handlers; the agent turns it into an ERROR reply with this code."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
