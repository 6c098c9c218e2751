"""Consistent Overhead Byte Stuffing: removes every 0x00 from a frame so 0x00 can delimit frames.

An encoded block is a code byte ``n`` (1..255) followed by ``n - 1`` data bytes; a code below
255 stands for the data bytes plus one 0x00 (dropped after the last block). Overhead is one
byte per 254 bytes, at most.
"""

from __future__ import annotations

from .errors import ProtocolError


class CobsError(ProtocolError):
    """Encoded bytes that are not valid COBS (a zero byte, or a block running past the end)."""


def cobs_encode(data: bytes) -> bytes:
    """Encode ``data`` so the result contains no 0x00 (canonical form, no trailing 0x01)."""
    out = bytearray()
    pieces = bytes(data).split(b"\x00")
    last = len(pieces) - 1
    for index, piece in enumerate(pieces):
        size = len(piece)
        pos = 0
        while size - pos >= 254:
            out.append(0xFF)
            out += piece[pos : pos + 254]
            pos += 254
        if index == last and size > 0 and pos == size:
            break  # the data ends exactly after a full 254-byte block: nothing more to say
        out.append(size - pos + 1)
        out += piece[pos:]
    return bytes(out)


def cobs_decode(encoded: bytes) -> bytes:
    """Decode one COBS block sequence (without its 0x00 delimiter); raises CobsError if invalid."""
    zero = encoded.find(0)
    if zero >= 0:
        raise CobsError(f"COBS: zero byte at offset {zero} inside a frame")
    out = bytearray()
    size = len(encoded)
    pos = 0
    while pos < size:
        code = encoded[pos]
        end = pos + code
        if end > size:
            raise CobsError(
                f"COBS: block at offset {pos} announces {code - 1} bytes, "
                f"only {size - pos - 1} left"
            )
        out += encoded[pos + 1 : end]
        pos = end
        if code < 0xFF and pos < size:
            out.append(0)
    return bytes(out)


def cobs_max_encoded_size(size: int) -> int:
    """Largest COBS encoding of ``size`` raw bytes."""
    return size + size // 254 + 1
