"""The host's session with a board agent: open the port, check the board runs the bundle, and
stream whole clips through it with recovery.

``stream_clip`` sends a clip as contiguous AUDIO_CHUNKs and puts every SEPARATED_CHUNK at its
stream position; it checks that each position arrives exactly once, so a lost or duplicated
frame cannot go unnoticed. When the board restarts (``PeerRestarted``) or stops answering for
a while (``LinkTimeout``), the session reconnects, checks the board's model again, resets its
state and replays the clip from position 0 (the model state of the lost run is gone, so only
a full replay gives the same output); after ``max_recoveries`` it stops with ``HilError``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import numpy as np

from firmware_host.board.bundle import Bundle
from firmware_host.protocol.client import BoardClient
from firmware_host.protocol.errors import LinkTimeout, PeerError, PeerRestarted, ProtocolError
from firmware_host.protocol.link import Link, LinkConfig
from firmware_host.protocol.messages import AudioChunk, Info
from firmware_host.transport import open_port

DEFAULT_CHUNK_HOPS = 8  # 1024 samples, 64 ms: 1.8 % protocol overhead (docs/protocol.md)
DEFAULT_BAUD = 921600
MANIFEST_KEYS = ("audio", "sources", "input", "output", "states")


class HilError(RuntimeError):
    """The harness cannot go on: says what happened and what to do."""


@dataclass
class StreamResult:
    """One clip through the board: aligned int16 sources and what the link saw."""

    sources: np.ndarray  # int16 (n_sources, n_samples), aligned with the input
    chunks: int
    invoke_us: list  # per chunk: microseconds per invoke (chunk total / invokes)
    invokes: int
    wall_seconds: float
    link: dict  # link counter deltas during the clip (bytes, resends, ...)
    recoveries: list = field(default_factory=list)  # what went wrong and how it was recovered


def _counters(link: Link) -> dict:
    stats = link.stats
    return {
        "bytes_sent": stats.bytes_sent,
        "bytes_received": stats.bytes_received,
        "frames_sent": stats.frames_sent,
        "frames_received": stats.frames_received,
        "resends": stats.resends,
        "timeouts": stats.timeouts,
        "naks_sent": stats.naks_sent,
        "naks_received": stats.naks_received,
        "duplicates": stats.duplicates,
        "decode_errors": stats.decode_errors,
        "peer_restarts": stats.peer_restarts,
    }


def _delta(before: dict, after: dict) -> dict:
    return dict((key, after[key] - before[key]) for key in after)


def manifest_differences(board_manifest, bundle: Bundle) -> list:
    """Fields of the board's manifest that differ from the local bundle's (empty: they agree)."""
    if not isinstance(board_manifest, dict):
        return ["the board sent no manifest"]
    local = json.loads(bundle.manifest_text)
    problems = []
    for key in MANIFEST_KEYS:
        if board_manifest.get(key) != local.get(key):
            problems.append(key)
    return problems


class BoardSession:
    """A connected board: ``open`` a pyserial URL (or take a byte stream), ``check`` the model."""

    def __init__(
        self,
        port: str | None = None,
        stream=None,
        baud: int | None = None,
        config: LinkConfig | None = None,
        reply_timeout: float = 10.0,
        connect_timeout: float = 20.0,
        max_recoveries: int = 3,
    ) -> None:
        if (port is None) == (stream is None):
            raise ValueError("give either a port URL or a byte stream")
        self.port = port
        self.baud = baud
        if stream is None:
            stream = open_port(port, baud or DEFAULT_BAUD)
        config = config if config is not None else LinkConfig(baud=baud)
        self.link = Link(stream, config, name="host")
        self.client = BoardClient(self.link, timeout=reply_timeout)
        self.connect_timeout = connect_timeout
        self.max_recoveries = max_recoveries
        self.info = None
        self.bundle = None

    def connect(self) -> Info:
        """Open a session and read INFO; a silent board raises HilError naming the port."""
        try:
            self.info = self.client.connect(timeout=self.connect_timeout)
        except LinkTimeout as exc:
            raise HilError(
                f"no board agent answers on {self.port or 'the stream'}: {exc}. Is the agent "
                "running (python3 -m firmware_host.board --port ... --bundle ...) "
                "and the baud right?"
            ) from None
        return self.info

    def check(self, bundle: Bundle) -> None:
        """Make sure the board runs exactly this bundle (model sha256 and manifest)."""
        info = self.info
        if not info.has_model:
            reason = ""
            try:
                self.client.reset_state()
            except PeerError as exc:
                reason = f": {exc.text}"
            raise HilError(f"the board has no model loaded{reason}")
        board_sha = info.model_sha256.hex()
        if board_sha != bundle.model_sha256:
            raise HilError(
                f"the board runs model sha256 {board_sha[:16]}..., the bundle {bundle.folder} has "
                f"{bundle.model_sha256[:16]}...: flash it first "
                f"(tinysep flash --port PORT --bundle {bundle.folder}, or hil --flash)"
            )
        try:
            board_manifest = info.manifest
        except ValueError:
            board_manifest = None
        differences = manifest_differences(board_manifest, bundle)
        if differences:
            raise HilError(
                f"the board's manifest differs from {bundle.manifest_path} in "
                f"{', '.join(differences)} although the model sha256 matches: copy the whole "
                "bundle folder to the board"
            )
        self.bundle = bundle

    def reconnect(self) -> Info:
        """A new session after a restart or a stall; checks the model again."""
        try:
            self.info = self.client.connect(timeout=self.connect_timeout)
        except LinkTimeout as exc:
            raise HilError(
                f"the board stopped answering and did not come back within "
                f"{self.connect_timeout:.1f} s: {exc}"
            ) from None
        if self.bundle is not None:
            self.check(self.bundle)
        return self.info

    def stream_clip(
        self, pcm: np.ndarray, chunk_hops: int = DEFAULT_CHUNK_HOPS, progress=None
    ) -> StreamResult:
        """Separate int16 ``pcm`` on the board; output aligned to the input, same length.

        ``progress(samples)`` is called as chunks come back (again from 0 after a replay).
        """
        bundle = self.bundle
        if bundle is None:
            raise HilError("check() the board against a bundle before streaming")
        pcm = np.asarray(pcm, dtype=np.int16)
        chunk = chunk_hops * bundle.hop
        delay = bundle.delay_samples
        total = -(-(pcm.size + delay) // chunk) * chunk
        padded = np.zeros(total, dtype=np.int16)
        padded[: pcm.size] = pcm
        recoveries = []
        start = time.perf_counter()
        before = _counters(self.link)
        while True:
            try:
                sources, invoke_us, invokes = self._stream_once(padded, chunk, progress)
                break
            except (PeerRestarted, LinkTimeout) as exc:
                if len(recoveries) >= self.max_recoveries:
                    raise HilError(
                        f"gave up after {len(recoveries)} recoveries in one clip; last: {exc}"
                    ) from None
                kind = "board restarted" if isinstance(exc, PeerRestarted) else "timeout"
                recoveries.append({"kind": kind, "detail": str(exc)})
                self.reconnect()
        wall = time.perf_counter() - start
        aligned = sources[:, delay : delay + pcm.size]
        return StreamResult(
            aligned,
            total // chunk,
            invoke_us,
            invokes,
            wall,
            _delta(before, _counters(self.link)),
            recoveries,
        )

    def _stream_once(self, padded: np.ndarray, chunk: int, progress):
        n_sources = len(self.bundle.sources)
        count = padded.size // chunk
        out = np.zeros((n_sources, padded.size), dtype=np.int16)
        seen = np.zeros(count, dtype=bool)
        invoke_us = []
        invokes = 0
        self.client.reset_state()
        chunks = (AudioChunk(i * chunk, padded[i * chunk : (i + 1) * chunk]) for i in range(count))
        expected = 0
        for reply in self.client.stream(chunks):
            if reply.position != expected or reply.position % chunk:
                raise ProtocolError(
                    f"SEPARATED_CHUNK at position {reply.position}, expected {expected}"
                )
            index = reply.position // chunk
            if seen[index]:
                raise ProtocolError(f"position {reply.position} arrived twice")
            if reply.sources.shape != (n_sources, chunk):
                raise ProtocolError(
                    f"SEPARATED_CHUNK at {reply.position} has shape {reply.sources.shape}, "
                    f"expected {(n_sources, chunk)}"
                )
            seen[index] = True
            out[:, reply.position : reply.position + chunk] = reply.sources
            if reply.n_invokes:
                invoke_us.append(reply.invoke_us / reply.n_invokes)
            invokes += reply.n_invokes
            expected += chunk
            if progress is not None:
                progress(expected)
        if not seen.all():
            missing = [int(i) * chunk for i in np.flatnonzero(~seen)[:5]]
            raise ProtocolError(f"no SEPARATED_CHUNK for positions {missing}")
        return out, invoke_us, invokes

    def upload(self, data: bytes, progress=None):
        """Upload a model file and refresh INFO (see ``BoardClient.upload``)."""
        done = self.client.upload(data, progress=progress)
        self.info = self.client.info()
        return done

    def close(self) -> None:
        self.link.close(close_stream=True)

    def __enter__(self) -> BoardSession:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
