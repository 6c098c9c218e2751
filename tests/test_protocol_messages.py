"""Message payloads: every type round-trips, layouts are byte-exact, bad payloads are named."""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest

from firmware_host.protocol.errors import MessageError
from firmware_host.protocol.messages import (
    MESSAGE_CLASSES,
    ROLE_BOARD,
    AudioChunk,
    ErrorCode,
    ErrorReply,
    GetInfo,
    Hello,
    Info,
    MessageType,
    Ok,
    Ping,
    Pong,
    ResetState,
    SeparatedChunk,
    Tensor,
    TensorIn,
    TensorOut,
    UploadBegin,
    UploadChunk,
    UploadDone,
    UploadEnd,
    decode_message,
    error_code_name,
    message_type_name,
)

RNG = np.random.default_rng(2)
SHA = bytes(range(32))


def sample_messages() -> list:
    return [
        Hello(0xFFFFFFFF, 0x12345678, ROLE_BOARD, 65535, 0xFFFFFFFF, 255),
        GetInfo(),
        Info(
            "agent 0.1 \u00e9",
            "ai_edge_litert 2.3.0",
            "edgetpu",
            SHA,
            123456,
            '{"hop": 128, "sources": ["vocals", "accompaniment"]}',
            0x7,
        ),
        Info("a", "b", "cpu"),
        ResetState(),
        Ok(MessageType.UPLOAD_BEGIN),
        Ping(0, b""),
        Ping(0xFFFFFFFF, bytes(range(256))),
        Pong(7, b"\x00\x00"),
        ErrorReply(
            ErrorCode.BAD_AUDIO,
            "chunk at 5, expected 0 \u2013 reset first",
            MessageType.AUDIO_CHUNK,
        ),
        AudioChunk(0xFFFFFF80, RNG.integers(-32768, 32768, 1024, dtype=np.int16)),
        AudioChunk(0, np.zeros(0, dtype=np.int16)),
        SeparatedChunk(1024, RNG.integers(-32768, 32768, (2, 1024), dtype=np.int16), 0xFFFFFFFF, 8),
        SeparatedChunk(0, RNG.integers(-5, 5, (3, 128), dtype=np.int16), 17, 1),
        TensorIn(
            [
                Tensor(0, RNG.integers(-128, 128, (1, 4, 257, 1), dtype=np.int8)),
                Tensor(1, RNG.integers(0, 256, (7,), dtype=np.uint8)),
                Tensor(2, RNG.integers(-32768, 32768, (3, 2), dtype=np.int16)),
                Tensor(5, RNG.integers(-(2**31), 2**31, (2,), dtype=np.int32)),
                Tensor(255, np.array(1.5, dtype=np.float32)),
            ]
        ),
        TensorIn([]),
        TensorOut([Tensor(0, RNG.integers(-128, 128, (1, 257), dtype=np.int8))], 12345),
        UploadBegin(10_000_000, SHA),
        UploadChunk(4096, b"\x00\x01" * 100),
        UploadEnd(),
        UploadDone(10_000_000, SHA),
    ]


@pytest.mark.parametrize("message", sample_messages(), ids=lambda m: type(m).__name__)
def test_every_message_round_trips(message):
    payload = message.encode()
    decoded = decode_message(int(message.TYPE), payload)
    assert type(decoded) is type(message)
    assert decoded == message
    assert decoded.encode() == payload


def test_every_message_type_has_a_class():
    link_only = {MessageType.ACK, MessageType.NAK}
    assert set(MESSAGE_CLASSES) == {int(t) for t in MessageType} - {int(t) for t in link_only}
    assert {type(m).TYPE for m in sample_messages()} == set(MessageType) - link_only


def test_audio_layouts_are_byte_exact():
    chunk = AudioChunk(0x01020304, np.array([1, -2, 32767], dtype=np.int16))
    assert chunk.encode() == bytes.fromhex("04030201030000000100feffff7f")
    sources = np.array([[1, 2], [-1, -2]], dtype=np.int16)
    separated = SeparatedChunk(256, sources, invoke_us=1000, n_invokes=2).encode()
    assert separated[:14] == struct.pack("<IIHHBB", 256, 1000, 2, 2, 2, 0)
    assert separated[14:] == struct.pack("<4h", 1, 2, -1, -2)  # source-major


def test_hello_and_info_layouts_are_byte_exact():
    hello = Hello(0x11223344, 0x55667788, ROLE_BOARD, 4096, 65536, 8).encode()
    assert hello == struct.pack("<BBHIIIBBH", 1, 1, 4096, 0x11223344, 0x55667788, 65536, 8, 0, 0)
    info = Info("v1", "rt", "cpu", SHA, 77, "{}", 5).encode()
    assert info[:4] == bytes([1, 0, 5, 0]) and info[4:36] == SHA
    assert (
        info[36:] == struct.pack("<I", 77) + b"\x02v1\x02rt\x03cpu" + struct.pack("<I", 2) + b"{}"
    )


def test_tensor_layout_is_byte_exact():
    tensor = Tensor(3, np.array([[1, -1, 2]], dtype=np.int16))
    payload = TensorOut([tensor], 9).encode()
    assert payload == (
        struct.pack("<I", 9)
        + bytes([1, 0, 0, 0])
        + bytes([3, 3, 2, 0])
        + struct.pack("<2I", 1, 3)
        + struct.pack("<3h", 1, -1, 2)
    )


def test_big_endian_arrays_are_sent_little_endian():
    big = np.array([1, 256], dtype=">i2")
    decoded = TensorIn.decode(TensorIn([Tensor(0, big)]).encode())
    assert decoded.tensors[0].array.tolist() == [1, 256]
    assert AudioChunk.decode(AudioChunk(0, big.astype(np.int16)).encode()).samples.tolist() == [
        1,
        256,
    ]


@pytest.mark.parametrize("message", sample_messages(), ids=lambda m: type(m).__name__)
def test_truncated_or_extended_payloads_raise_message_error_only(message):
    payload = message.encode()
    for cut in range(len(payload)):
        try:
            type(message).decode(payload[:cut])
        except MessageError as exc:
            assert MessageType(message.TYPE).name in str(exc) and exc.msg_type == message.TYPE
    if not isinstance(message, (Ping, UploadChunk)):  # those end with free-length data
        with pytest.raises(MessageError, match="unexpected bytes"):
            type(message).decode(payload + b"\x00")


def test_random_payloads_never_raise_anything_but_message_error():
    rng = random.Random(9)
    for msg_type in MESSAGE_CLASSES:
        for _ in range(200):
            payload = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 60)))
            try:
                decode_message(msg_type, payload)
            except MessageError:
                pass


@pytest.mark.parametrize(
    "cls,payload,message",
    [
        (Info, Info("a", "b", "c", manifest_json="x").encode(), "INFO: manifest is not valid JSON"),
        (Info, Info("a", "b", "c", manifest_json="[1]").encode(), "manifest must be a JSON object"),
        (
            ErrorReply,
            struct.pack("<HBBH", 1, 0, 0, 2) + b"\xff\xfe",
            "ERROR: text is not valid UTF-8",
        ),
        (TensorIn, bytes([1, 0, 0, 0, 0, 9, 0, 0]), "TENSOR_IN: tensor 0 has unknown dtype code 9"),
        (
            TensorIn,
            bytes([1, 0, 0, 0, 0, 1, 1, 0]) + struct.pack("<I", 1 << 30),
            "tensor 0 data (1073741824,)",
        ),
        (
            Hello,
            struct.pack("<BBHIIIBBH", 1, 0, 1024, 0, 0, 4096, 8, 0, 0),
            "HELLO: session_id must not be 0",
        ),
        (
            Hello,
            struct.pack("<BBHIIIBBH", 1, 0, 1024, 5, 0, 512, 8, 0, 0),
            "max_message 512 is below",
        ),
        (
            SeparatedChunk,
            struct.pack("<IIHHBB", 0, 0, 4, 1, 2, 0) + b"\x01" * 8,
            "needs 16 bytes from byte 14",
        ),
    ],
)
def test_bad_fields_are_named_in_the_error(cls, payload, message):
    with pytest.raises(MessageError) as error:
        cls.decode(payload)
    assert message in str(error.value)


def test_encoders_refuse_values_that_do_not_fit():
    with pytest.raises(MessageError, match="must be int16"):
        AudioChunk(0, np.zeros(4, dtype=np.float32)).encode()
    with pytest.raises(MessageError, match="at most 65535 samples"):
        AudioChunk(0, np.zeros(70000, dtype=np.int16)).encode()
    with pytest.raises(MessageError, match="dtype float64"):
        TensorIn([Tensor(0, np.zeros(2))]).encode()
    with pytest.raises(MessageError, match="at most 255 fit"):
        Info("x" * 300, "rt", "cpu").encode()
    with pytest.raises(MessageError, match="sha256 must be 32 bytes"):
        UploadBegin(1, b"short").encode()


def test_unknown_types_and_codes_have_readable_names():
    with pytest.raises(MessageError, match="unknown message type 0x7e"):
        decode_message(0x7E, b"")
    assert message_type_name(0x20) == "AUDIO_CHUNK" and message_type_name(0x7E) == "type 0x7e"
    assert (
        error_code_name(0x0204) == "UPLOAD_SHA256_MISMATCH"
        and error_code_name(0x4242) == "code 0x4242"
    )


def test_crafted_tensor_records_raise_message_error_only_and_bound_the_rank():
    rng = random.Random(12)
    dims = (0, 1, 2, 3, 255, 1 << 16, (1 << 32) - 1)
    for _ in range(400):
        ndim = rng.choice((0, 1, 2, 3, 8, 9, 64, 65, 255))
        shape = [rng.choice(dims) for _ in range(ndim)]
        body = bytes([1, 0, 0, 0, rng.randrange(3), rng.randrange(1, 6), ndim, 0])
        body += struct.pack(f"<{ndim}I", *shape) + bytes(rng.randrange(0, 40))
        for msg_type, payload in ((0x22, body), (0x23, b"\x00" * 4 + body)):
            try:
                message = decode_message(msg_type, payload)
            except MessageError as exc:
                assert exc.msg_type == msg_type
                if ndim > 8:
                    assert f"{ndim} dimensions, at most 8" in str(exc)
                continue
            (tensor,) = message.tensors
            assert tensor.array.ndim == ndim <= 8 and 0 not in tensor.array.shape
