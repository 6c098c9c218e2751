"""Protocol overhead of audio streaming: wire bytes per chunk exchange against the PCM they carry.

One exchange is AUDIO_CHUNK (1 channel in) -> SEPARATED_CHUNK (n sources out) plus one
stand-alone ACK per data frame (the worst case: the link piggybacks ACKs on data when it can).
The PCM has no zero bytes, the worst case for COBS. Frames are built by the real encoder.

    python -m hil.overhead      # prints the table for 1..16 hops per chunk
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass

import numpy as np

from firmware_host.bundle.layout import SAMPLE_RATE
from firmware_host.protocol.framing import DEFAULT_MAX_PAYLOAD, Frame, encode_frame
from firmware_host.protocol.messages import AudioChunk, MessageType, SeparatedChunk

HOP_SAMPLES = 128  # tinysep.dsp.HOP_SAMPLES (the board side does not import tinysep)
DEFAULT_CHUNK_HOPS = 8  # 1024 samples, 64 ms of audio per AUDIO_CHUNK
OVERHEAD_TARGET = 0.05


@dataclass
class Overhead:
    """Bytes of one chunk exchange and the share that is not PCM."""

    hops: int
    samples: int
    n_sources: int
    pcm_bytes: int
    wire_bytes: int
    frames: int

    @property
    def overhead_bytes(self) -> int:
        return self.wire_bytes - self.pcm_bytes

    @property
    def overhead(self) -> float:
        """Fraction of the wire bytes that is not PCM."""
        return self.overhead_bytes / float(self.wire_bytes)

    def as_dict(self) -> dict:
        row = asdict(self)
        row["overhead_bytes"] = self.overhead_bytes
        row["overhead"] = round(self.overhead, 5)
        return row


def _message_wire_bytes(msg_type: int, payload: bytes, max_payload: int):
    """Wire bytes and frame count of a message, fragmented as the link does."""
    pieces = [payload[i : i + max_payload] for i in range(0, len(payload), max_payload)] or [b""]
    total = 0
    for index, piece in enumerate(pieces):
        flags = 1 if index < len(pieces) - 1 else 0
        total += len(encode_frame(Frame(msg_type, flags, 8, 0xFFFF, 0xFFFF, piece)))
    return total, len(pieces)


def chunk_overhead(
    hops: int,
    n_sources: int = 2,
    hop_samples: int = HOP_SAMPLES,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
) -> Overhead:
    """Overhead of one AUDIO_CHUNK -> SEPARATED_CHUNK exchange of ``hops`` hops."""
    samples = hops * hop_samples
    pcm = np.full(samples, 0x0101, dtype=np.int16)  # no zero bytes: COBS worst case
    audio = AudioChunk(0x01010101, pcm).encode()
    separated = SeparatedChunk(0x01010101, np.tile(pcm, (n_sources, 1)), 0x01010101, hops).encode()
    wire_in, frames_in = _message_wire_bytes(MessageType.AUDIO_CHUNK, audio, max_payload)
    wire_out, frames_out = _message_wire_bytes(MessageType.SEPARATED_CHUNK, separated, max_payload)
    ack = len(encode_frame(Frame(MessageType.ACK, 0, 8, 0xFFFF, 0xFFFF, b"")))
    frames = frames_in + frames_out
    wire = wire_in + wire_out + frames * ack
    return Overhead(hops, samples, n_sources, 2 * samples * (1 + n_sources), wire, 2 * frames)


UART_BITS_PER_BYTE = 10  # 8N1: start bit, 8 data bits, stop bit


def realtime_link(
    n_sources: int,
    hops: int = DEFAULT_CHUNK_HOPS,
    hop_samples: int = HOP_SAMPLES,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
    max_message: int | None = None,
) -> dict:
    """What streaming ``n_sources`` in real time needs of the link, each way.

    One exchange of ``hops`` hops every ``hops * hop_samples / SAMPLE_RATE`` seconds: the
    AUDIO_CHUNK and the ACKs of the reply's frames towards the board, the SEPARATED_CHUNK (in
    parts when it exceeds ``max_message``) and the ACKs of the request's frames towards the
    host, worst case for COBS and ACKs as in :func:`chunk_overhead`. ``min_baud`` is the busier
    direction at 10 line bits per byte (8N1).
    """
    samples = hops * hop_samples
    pcm = np.full(samples, 0x0101, dtype=np.int16)
    audio = AudioChunk(0x01010101, pcm).encode()
    reply = SeparatedChunk(0x01010101, np.tile(pcm, (n_sources, 1)), 0x01010101, hops)
    parts = reply.parts(max_message) if max_message is not None else [reply]
    ack = len(encode_frame(Frame(MessageType.ACK, 0, 8, 0xFFFF, 0xFFFF, b"")))
    wire_in, frames_in = _message_wire_bytes(MessageType.AUDIO_CHUNK, audio, max_payload)
    wire_out = frames_out = 0
    for part in parts:
        wire, frames = _message_wire_bytes(MessageType.SEPARATED_CHUNK, part.encode(),
                                           max_payload)
        wire_out += wire
        frames_out += frames
    per_second = SAMPLE_RATE / float(samples)
    to_board = (wire_in + frames_out * ack) * per_second
    to_host = (wire_out + frames_in * ack) * per_second
    return {
        "n_sources": n_sources,
        "hops": hops,
        "reply_parts": len(parts),
        "pcm_bytes_per_s_to_board": 2 * SAMPLE_RATE,
        "pcm_bytes_per_s_to_host": 2 * SAMPLE_RATE * n_sources,
        "bytes_per_s_to_board": round(to_board, 1),
        "bytes_per_s_to_host": round(to_host, 1),
        "min_baud": int(np.ceil(max(to_board, to_host) * UART_BITS_PER_BYTE)),
    }


def overhead_table(hops_list=(1, 2, 4, 8, 16), n_sources: int = 2) -> list:
    """Overhead for several chunk sizes."""
    return [chunk_overhead(hops, n_sources) for hops in hops_list]


def main(argv=None) -> int:
    """Print the overhead table (and JSON with --json)."""
    args = sys.argv[1:] if argv is None else argv
    rows = overhead_table()
    if "--json" in args:
        print(json.dumps([row.as_dict() for row in rows], indent=2))
        return 0
    print("hops  samples  ms/chunk  PCM bytes  wire bytes  frames  overhead")
    for row in rows:
        mark = "  <- default" if row.hops == DEFAULT_CHUNK_HOPS else ""
        ms = 1000.0 * row.samples / SAMPLE_RATE
        print(
            f"{row.hops:4d}  {row.samples:7d}  {ms:8.0f}  {row.pcm_bytes:9d}  "
            f"{row.wire_bytes:10d}  {row.frames:6d}  {100 * row.overhead:6.2f} %{mark}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
