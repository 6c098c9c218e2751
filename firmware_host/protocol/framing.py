"""Frames on the wire: header + payload + CRC-32, COBS-encoded between 0x00 delimiters.

Raw frame (little-endian), before COBS:

    offset 0  u8   protocol version (1)
    offset 1  u8   message type
    offset 2  u8   flags (bit 0 MORE, bit 1 POLL)
    offset 3  u8   credit: frames the sender of this frame can still accept beyond ``ack``
    offset 4  u16  sequence number
    offset 6  u16  ack: next sequence number the sender of this frame expects
    offset 8  u16  payload length N
    offset 10 N    payload
    offset 10+N u32 CRC-32 (zlib / ISO-HDLC) of bytes 0 .. 10+N-1

``FrameDecoder`` is a streaming state machine: feed it any byte chunks, it returns decoded
frames and decode errors, resynchronises at the next 0x00 and never buffers more than one
maximum-size frame. Nothing in a frame is unpickled or evaluated.
"""

from __future__ import annotations

import struct
import zlib
from collections import namedtuple

from .cobs import CobsError, cobs_decode, cobs_encode, cobs_max_encoded_size

PROTOCOL_VERSION = 1
HEADER = struct.Struct("<BBBBHHH")
HEADER_SIZE = HEADER.size  # 10
CRC = struct.Struct("<I")
CRC_SIZE = CRC.size  # 4
DELIMITER = b"\x00"

FLAG_MORE = 0x01  # more fragments of this message follow in the next sequence numbers
FLAG_POLL = 0x02  # the receiver must answer with an ACK at once

MAX_PAYLOAD_LIMIT = 0xFFFF  # the length field is 16 bits
MIN_MAX_PAYLOAD = 64  # smallest max payload an endpoint may announce
DEFAULT_MAX_PAYLOAD = 8192

# The kinds of decode error a FrameDecoder counts.
DECODE_ERROR_KINDS = ("oversize", "cobs", "short", "crc", "version", "length")

DecodeError = namedtuple("DecodeError", "kind detail size")
DecodeError.__doc__ = "A delimited chunk of bytes that is not a valid frame (kind, detail, size)."


class Frame(namedtuple("Frame", "msg_type flags credit seq ack payload")):
    """One decoded frame: header fields plus payload bytes."""

    __slots__ = ()


def crc32(data: bytes) -> int:
    """CRC-32/ISO-HDLC (poly 0x04C11DB7 reflected, init and xorout 0xFFFFFFFF), as zlib.crc32."""
    return zlib.crc32(data) & 0xFFFFFFFF


def frame_bytes(frame: Frame) -> bytes:
    """The raw (not yet COBS-encoded) bytes of a frame: header, payload, CRC."""
    payload = bytes(frame.payload)
    if len(payload) > MAX_PAYLOAD_LIMIT:
        raise ValueError(f"frame payload of {len(payload)} bytes exceeds the 16-bit length field")
    raw = (
        HEADER.pack(
            PROTOCOL_VERSION,
            frame.msg_type,
            frame.flags,
            frame.credit,
            frame.seq,
            frame.ack,
            len(payload),
        )
        + payload
    )
    return raw + CRC.pack(crc32(raw))


def encode_frame(frame: Frame, lead: bool = True) -> bytes:
    """Wire bytes of a frame: [0x00] COBS(raw frame) 0x00 (the leading 0x00 flushes line noise)."""
    body = cobs_encode(frame_bytes(frame)) + DELIMITER
    return DELIMITER + body if lead else body


def max_encoded_frame_size(max_payload: int) -> int:
    """Bytes of the largest COBS-encoded frame for a payload limit (delimiters not counted)."""
    return cobs_max_encoded_size(HEADER_SIZE + max_payload + CRC_SIZE)


def max_wire_size(payload_size: int, lead: bool = True) -> int:
    """Most wire bytes a frame with ``payload_size`` payload bytes can take, delimiters included."""
    return max_encoded_frame_size(payload_size) + (2 if lead else 1)


def parse_frame(raw: bytes, max_payload: int = MAX_PAYLOAD_LIMIT):
    """Check and split a raw (COBS-decoded) frame; returns a Frame or a DecodeError."""
    size = len(raw)
    if size < HEADER_SIZE + CRC_SIZE:
        return DecodeError("short", f"frame of {size} bytes is shorter than header + CRC", size)
    (expected,) = CRC.unpack_from(raw, size - CRC_SIZE)
    actual = crc32(raw[: size - CRC_SIZE])
    if actual != expected:
        return DecodeError("crc", f"CRC 0x{actual:08x}, frame says 0x{expected:08x}", size)
    version, msg_type, flags, credit, seq, ack, length = HEADER.unpack_from(raw, 0)
    if version != PROTOCOL_VERSION:
        return DecodeError(
            "version", f"protocol version {version}, this end speaks {PROTOCOL_VERSION}", size
        )
    if length != size - HEADER_SIZE - CRC_SIZE:
        return DecodeError(
            "length",
            f"length field {length}, payload is {size - HEADER_SIZE - CRC_SIZE} bytes",
            size,
        )
    if length > max_payload:
        return DecodeError("oversize", f"payload of {length} bytes exceeds {max_payload}", size)
    return Frame(msg_type, flags, credit, seq, ack, raw[HEADER_SIZE : size - CRC_SIZE])


class FrameDecoder:
    """Streaming frame decoder: ``feed(chunk)`` returns the frames and errors completed by it."""

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        if not MIN_MAX_PAYLOAD <= max_payload <= MAX_PAYLOAD_LIMIT:
            raise ValueError(
                f"max_payload must be in {MIN_MAX_PAYLOAD}..{MAX_PAYLOAD_LIMIT}, got {max_payload}"
            )
        self.max_payload = max_payload
        self.max_encoded = max_encoded_frame_size(max_payload)
        self._buffer = bytearray()
        self._discarding = False
        self._discarded = 0
        self.errors = dict((kind, 0) for kind in DECODE_ERROR_KINDS)
        self.frames = 0
        self.bad_bytes = 0

    @property
    def buffered(self) -> int:
        """Bytes held for the frame being received (never more than ``max_encoded``)."""
        return len(self._buffer)

    def reset(self) -> None:
        """Forget a partly received frame (the next bytes start a new one)."""
        self._buffer = bytearray()
        self._discarding = False
        self._discarded = 0

    def feed(self, data: bytes) -> list:
        """Consume a chunk of wire bytes; returns a list of ``Frame`` and ``DecodeError``."""
        events = []
        start = 0
        size = len(data)
        while start <= size:
            end = data.find(0, start)
            stop = size if end < 0 else end
            if stop > start:
                if self._discarding:
                    self._discarded += stop - start
                elif len(self._buffer) + (stop - start) > self.max_encoded:
                    self._discarding = True
                    self._discarded = len(self._buffer) + stop - start
                    self._buffer = bytearray()
                else:
                    self._buffer += data[start:stop]
            if end < 0:
                break
            if self._discarding:
                events.append(
                    self._error(
                        DecodeError(
                            "oversize",
                            f"frame of {self._discarded} or more encoded bytes "
                            f"exceeds {self.max_encoded}",
                            self._discarded,
                        )
                    )
                )
                self._discarding = False
                self._discarded = 0
            elif self._buffer:
                events.append(self._decode(bytes(self._buffer)))
                self._buffer = bytearray()
            start = end + 1
        return events

    def _decode(self, encoded: bytes):
        try:
            raw = cobs_decode(encoded)
        except CobsError as exc:
            return self._error(DecodeError("cobs", str(exc), len(encoded)))
        result = parse_frame(raw, self.max_payload)
        if isinstance(result, DecodeError):
            return self._error(result._replace(size=len(encoded)))
        self.frames += 1
        return result

    def _error(self, error):
        self.errors[error.kind] += 1
        self.bad_bytes += error.size
        return error
