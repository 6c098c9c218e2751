"""COBS, CRC-32 and the streaming frame decoder: byte-exact layouts and recovery from bad input."""

from __future__ import annotations

import random
import struct

import pytest

from firmware_host.protocol.cobs import CobsError, cobs_decode, cobs_encode, cobs_max_encoded_size
from firmware_host.protocol.framing import (
    HEADER_SIZE,
    PROTOCOL_VERSION,
    DecodeError,
    Frame,
    FrameDecoder,
    crc32,
    encode_frame,
    frame_bytes,
    max_encoded_frame_size,
)

# Published COBS vectors (data -> encoding without the delimiter).
COBS_VECTORS = [
    (b"", b"\x01"),
    (b"\x00", b"\x01\x01"),
    (b"\x00\x00", b"\x01\x01\x01"),
    (b"\x00\x11\x00", b"\x01\x02\x11\x01"),
    (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
    (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
    (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
    (bytes(range(1, 255)), b"\xff" + bytes(range(1, 255))),
    (bytes(range(0, 255)), b"\x01\xff" + bytes(range(1, 255))),
    (bytes(range(1, 256)), b"\xff" + bytes(range(1, 255)) + b"\x02\xff"),
    (bytes(range(2, 256)) + b"\x00", b"\xff" + bytes(range(2, 256)) + b"\x01\x01"),
    (bytes(range(3, 256)) + b"\x00\x01", b"\xfe" + bytes(range(3, 256)) + b"\x02\x01"),
]


@pytest.mark.parametrize("data,encoded", COBS_VECTORS)
def test_cobs_matches_published_vectors(data, encoded):
    assert cobs_encode(data) == encoded
    assert cobs_decode(encoded) == data


def test_cobs_round_trips_random_data_without_zero_bytes_within_the_size_bound():
    rng = random.Random(7)
    for _ in range(150):
        size = rng.randrange(0, 1200)
        data = bytes(rng.choice((0, 0, 1, 255, rng.randrange(256))) for _ in range(size))
        encoded = cobs_encode(data)
        assert 0 not in encoded
        assert len(encoded) <= cobs_max_encoded_size(size)
        assert cobs_decode(encoded) == data


@pytest.mark.parametrize(
    "bad,message",
    [
        (b"\x03\x11\x00\x22", "zero byte at offset 2"),
        (b"\x05\x11\x22", "announces 4 bytes, only 2 left"),
    ],
)
def test_cobs_rejects_invalid_encodings(bad, message):
    with pytest.raises(CobsError, match=message):
        cobs_decode(bad)


def test_crc32_is_iso_hdlc_with_the_standard_check_value():
    assert crc32(b"123456789") == 0xCBF43926
    assert crc32(b"") == 0


def test_raw_frame_layout_is_little_endian_at_the_documented_offsets():
    frame = Frame(0x20, 0x01, 7, 0x1234, 0xBEEF, b"\xaa\xbb\xcc")
    raw = frame_bytes(frame)
    assert len(raw) == HEADER_SIZE + 3 + 4
    assert raw[:HEADER_SIZE] == bytes(
        [PROTOCOL_VERSION, 0x20, 0x01, 7, 0x34, 0x12, 0xEF, 0xBE, 3, 0]
    )
    assert raw[10:13] == b"\xaa\xbb\xcc"
    assert struct.unpack("<I", raw[13:]) == (crc32(raw[:13]),)
    wire = encode_frame(frame)
    assert wire[0] == 0 and wire[-1] == 0 and 0 not in wire[1:-1]
    assert encode_frame(frame, lead=False) == wire[1:]


def frames_for_test():
    rng = random.Random(3)
    return [
        Frame(
            rng.randrange(1, 256),
            rng.randrange(4),
            rng.randrange(256),
            rng.randrange(65536),
            rng.randrange(65536),
            bytes(rng.randrange(256) for _ in range(rng.randrange(0, 700))),
        )
        for _ in range(30)
    ]


def test_decoder_accepts_any_chunking_of_the_byte_stream():
    frames = frames_for_test()
    stream = b"".join(encode_frame(f) for f in frames)
    rng = random.Random(5)
    for _ in range(5):
        decoder = FrameDecoder(1024)
        got = []
        pos = 0
        while pos < len(stream):
            step = rng.choice((1, 2, 3, 17, 254, 255, 1000))
            got.extend(decoder.feed(stream[pos : pos + step]))
            pos += step
        assert got == frames
        assert decoder.frames == len(frames) and sum(decoder.errors.values()) == 0


def test_decoder_resynchronises_after_garbage_and_counts_each_kind_of_error():
    good = Frame(0x14, 0, 8, 1, 0, b"hello")
    bad_crc = bytearray(frame_bytes(good))
    bad_crc[11] ^= 0x01
    wrong_version = bytearray(frame_bytes(good))
    wrong_version[0] = 9
    wrong_version[-4:] = struct.pack("<I", crc32(bytes(wrong_version[:-4])))
    wrong_length = bytearray(frame_bytes(good))
    wrong_length[8] = 4
    wrong_length[-4:] = struct.pack("<I", crc32(bytes(wrong_length[:-4])))
    stream = b"".join(
        [
            b"\x13\x37garbage-without-delimiter",  # before the first delimiter: one bad chunk
            encode_frame(good),
            b"\x00" + cobs_encode(bytes(bad_crc)) + b"\x00",
            b"\x00" + cobs_encode(bytes(wrong_version)) + b"\x00",
            b"\x00" + cobs_encode(bytes(wrong_length)) + b"\x00",
            b"\x00" + cobs_encode(b"\x01\x02\x03") + b"\x00",  # shorter than header + CRC
            b"\x00\x00\x00",
            encode_frame(good),
        ]
    )
    decoder = FrameDecoder(1024)
    events = decoder.feed(stream)
    frames = [e for e in events if isinstance(e, Frame)]
    kinds = [e.kind for e in events if isinstance(e, DecodeError)]
    assert frames == [good, good]
    assert kinds == ["cobs", "crc", "version", "length", "short"]
    assert decoder.errors == {
        "oversize": 0,
        "cobs": 1,
        "short": 1,
        "crc": 1,
        "version": 1,
        "length": 1,
    }
    assert decoder.bad_bytes > 0


def test_oversized_input_is_rejected_without_buffering_it():
    decoder = FrameDecoder(256)
    limit = max_encoded_frame_size(256)
    junk = bytes(range(1, 256)) * 16  # no zero byte: one endless "frame"
    for _ in range(250):  # about 1 MB
        assert decoder.feed(junk) == []
        assert decoder.buffered <= limit
    big = Frame(0x22, 0, 8, 0, 0, b"\x05" * 300)
    small = Frame(0x14, 0, 8, 1, 0, b"ok")
    events = decoder.feed(b"\x00" + encode_frame(big) + encode_frame(small))
    assert [e.kind for e in events if isinstance(e, DecodeError)] == ["oversize", "oversize"]
    assert [e for e in events if isinstance(e, Frame)] == [small]
    assert decoder.errors["oversize"] == 2


def test_decoder_rejects_out_of_range_limits():
    with pytest.raises(ValueError, match="max_payload must be in 64..65535"):
        FrameDecoder(70000)
