"""Settings and counters of the reliable link, and its sequence-number arithmetic.

``LinkConfig`` holds the limits an end announces in HELLO and its retransmission timing,
``PeerParams`` what the peer announced, ``LinkStats`` the counters. Board-safe (Python 3.7).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from .framing import (
    DEFAULT_MAX_PAYLOAD,
    MAX_PAYLOAD_LIMIT,
    MIN_MAX_PAYLOAD,
    max_wire_size,
)
from .messages import (
    ROLE_BOARD,
    ROLE_HOST,
)

DEFAULT_WINDOW = 8
DEFAULT_MAX_MESSAGE = 1 << 20
DEFAULT_ACK_TIMEOUT = 0.25
DEFAULT_MAX_RETRIES = 8
MAX_BACKOFF = 2  # after a timeout without progress the retransmission timeout doubles, once

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


def board_config(**overrides) -> LinkConfig:
    """A LinkConfig for the board end (role BOARD), with any field overridden."""
    overrides.setdefault("role", ROLE_BOARD)
    return LinkConfig(**overrides)
