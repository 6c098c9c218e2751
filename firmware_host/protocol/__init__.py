"""Wire protocol between the host and a board agent: framing, messages, reliable link.

Board-safe: the standard library and numpy only, Python 3.7 syntax. Spec: docs/protocol.md.
Modules: ``cobs`` and ``framing`` (bytes on the wire), ``codes`` (message types and error
codes), ``errors``, ``messages`` (payload layouts), ``link_config``, ``link_state`` and
``link`` (sequencing, retransmission, credits, sessions), ``upload`` (board-side model
upload). The host's tools over it (request client, fault relay, conformance replayer,
overhead and example generators) are in ``hil``.
"""

from __future__ import annotations

from .errors import (
    HandshakeRefused,
    LinkClosed,
    LinkError,
    LinkTimeout,
    MessageError,
    NotConnected,
    PeerError,
    PeerRestarted,
    ProtocolError,
    RequestRejected,
)
from .framing import DEFAULT_MAX_PAYLOAD, PROTOCOL_VERSION
from .link import Link, LinkConfig, LinkStats, PeerParams, board_config
from .messages import ErrorCode, MessageType

__all__ = [
    "DEFAULT_MAX_PAYLOAD",
    "PROTOCOL_VERSION",
    "ErrorCode",
    "HandshakeRefused",
    "Link",
    "LinkClosed",
    "LinkConfig",
    "LinkError",
    "LinkStats",
    "LinkTimeout",
    "MessageError",
    "MessageType",
    "NotConnected",
    "PeerError",
    "PeerParams",
    "PeerRestarted",
    "ProtocolError",
    "RequestRejected",
    "board_config",
]
