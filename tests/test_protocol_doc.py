"""docs/protocol.md stays true to the code: examples, tables, CRC parameters, overhead."""

from __future__ import annotations

import contextlib
import io
import pathlib
import re

import pytest

from firmware_host.protocol.framing import crc32, encode_frame, frame_bytes
from firmware_host.protocol.messages import ErrorCode, MessageType
from hil.examples import BEGIN_MARKER, example_frames, render_examples_markdown
from hil.overhead import (
    DEFAULT_CHUNK_HOPS,
    HOP_SAMPLES,
    OVERHEAD_TARGET,
    SAMPLE_RATE,
    chunk_overhead,
    main,
)

DOC = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()


def test_worked_examples_match_the_encoder_byte_for_byte():
    assert render_examples_markdown() in DOC
    section = DOC[DOC.index(BEGIN_MARKER) :]
    blocks = re.findall(r"```\n([0-9a-f \n]+)```", section)
    assert len(blocks) == 2 * len(example_frames())
    pairs = zip(blocks[0::2], blocks[1::2], strict=True)
    for (_, _, frame), (raw_hex, wire_hex) in zip(example_frames(), pairs, strict=True):
        assert bytes.fromhex(raw_hex.replace("\n", " ")) == frame_bytes(frame)
        assert bytes.fromhex(wire_hex.replace("\n", " ")) == encode_frame(frame)


def test_crc_parameters_in_the_doc_are_the_ones_used():
    for text in ("0x04C11DB7", "0xEDB88320", "0xFFFFFFFF", "0xCBF43926"):
        assert text in DOC
    assert crc32(b"123456789") == 0xCBF43926


def test_every_message_type_and_error_code_is_documented_with_its_value():
    for msg_type in MessageType:
        assert re.search(rf"\| 0x{msg_type:02x} \| {msg_type.name} \|", DOC), msg_type.name
        if msg_type not in (
            MessageType.HELLO,
            MessageType.ACK,
            MessageType.NAK,
        ):  # laid out in section 2
            assert re.search(rf"### .*{msg_type.name} \(0x{msg_type:02x}\)", DOC), msg_type.name
    for code in ErrorCode:
        assert f"| 0x{code:04x} | {code.name} |" in DOC, code.name


def test_overhead_table_in_the_doc_is_current_and_the_default_meets_the_target():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main([])
    assert out.getvalue() in DOC
    default = chunk_overhead(DEFAULT_CHUNK_HOPS)
    assert default.overhead <= OVERHEAD_TARGET
    assert chunk_overhead(1).overhead > OVERHEAD_TARGET  # one hop per chunk would not do
    sizes = [chunk_overhead(h).overhead for h in (1, 2, 4, 8, 16)]
    assert sizes == sorted(sizes, reverse=True)
    assert default.pcm_bytes == 1024 * 2 * 3 and default.frames == 4


def test_retransmission_timeout_table_matches_the_link():
    from firmware_host.protocol.link import LinkConfig

    rows = {
        None: "| pseudo-terminal / USB CDC (no baud) |",
        2_000_000: "| 2 000 000 baud |",
        921_600: "| 921 600 baud |",
        115_200: "| 115 200 baud |",
    }
    for baud, label in rows.items():
        config = LinkConfig(baud=baud)
        rto = config.retransmit_timeout(8192)
        give_up = config.give_up_time(8192)
        assert f"{label} {rto:.2f} s | {give_up:.2f} s |" in DOC, label
        assert give_up == pytest.approx(rto * (1 + 2 * config.max_retries))


def test_overhead_uses_the_kit_hop_and_sample_rate():
    from tinysep import dsp

    assert (HOP_SAMPLES, SAMPLE_RATE) == (dsp.HOP_SAMPLES, dsp.SAMPLE_RATE)
