"""Message type bytes and error codes of the wire protocol, and their printable names.

The lowest module of the protocol: the exceptions name codes through it, the messages carry
them. Numbers are specified in docs/protocol.md.
"""

from __future__ import annotations

import enum


class MessageType(enum.IntEnum):
    """Message type byte (frame header offset 1)."""

    HELLO = 0x01
    ACK = 0x02
    NAK = 0x03
    GET_INFO = 0x10
    INFO = 0x11
    RESET_STATE = 0x12
    OK = 0x13
    PING = 0x14
    PONG = 0x15
    ERROR = 0x16
    AUDIO_CHUNK = 0x20
    SEPARATED_CHUNK = 0x21
    TENSOR_IN = 0x22
    TENSOR_OUT = 0x23
    UPLOAD_BEGIN = 0x30
    UPLOAD_CHUNK = 0x31
    UPLOAD_END = 0x32
    UPLOAD_DONE = 0x33


# Link-control frames: not sequenced, never delivered to the application.
LINK_TYPES = frozenset((MessageType.HELLO, MessageType.ACK, MessageType.NAK))


class ErrorCode(enum.IntEnum):
    """Codes carried by ERROR messages (u16)."""

    BAD_MESSAGE = 0x0001  # payload does not follow the message layout
    UNKNOWN_TYPE = 0x0002  # message type not implemented by this end
    MESSAGE_TOO_LARGE = 0x0003  # reassembled message exceeds the announced max message size
    UNEXPECTED = 0x0004  # message not valid in the current state
    UNSUPPORTED_VERSION = 0x0005  # HELLO / INFO protocol_version other than PROTOCOL_VERSION
    BAD_HELLO = 0x0006  # HELLO limits out of range, session_id 0, or the receiver's own role
    NO_MODEL = 0x0100  # no model loaded: audio and tensor requests cannot run
    BAD_AUDIO = 0x0101  # sample count or position not hop-aligned, or a gap in positions
    BAD_TENSOR = 0x0102  # tensor index, dtype or shape differs from the model's inputs
    INVOKE_FAILED = 0x0103  # the interpreter raised while running the model
    UPLOAD_NOT_STARTED = 0x0200  # UPLOAD_CHUNK / UPLOAD_END without an upload in progress
    UPLOAD_OFFSET = 0x0201  # chunk offset differs from the bytes received so far
    UPLOAD_TOO_LARGE = 0x0202  # announced size exceeds what the board accepts
    UPLOAD_SIZE_MISMATCH = 0x0203  # bytes received differ from the announced size
    UPLOAD_SHA256_MISMATCH = 0x0204  # sha256 of the received bytes differs from the announced one
    UPLOAD_INVALID_MODEL = 0x0205  # the bytes arrived intact but the runtime cannot load them
    UPLOAD_IO = 0x0206  # writing the file failed (disk full, permissions)
    UPLOAD_BAD_TARGET = 0x0207  # unknown upload target
    INTERNAL = 0xFFFF  # unexpected failure on the board; text says more


def message_type_name(value: int) -> str:
    """Name of a message type byte, or its hex value if unknown."""
    try:
        return MessageType(value).name
    except ValueError:
        return f"type 0x{value:02x}"


def error_code_name(value: int) -> str:
    """Name of an error code, or its hex value if unknown."""
    try:
        return ErrorCode(value).name
    except ValueError:
        return f"code 0x{value:04x}"
