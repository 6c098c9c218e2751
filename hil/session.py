"""The host's session with a board agent: open the port, check the board runs the bundle, and
stream whole clips through it with recovery.

After HELLO and INFO the session knows the board's limits (``BoardLimits``: the largest
message it holds, its window, the capabilities it lists) and sizes every request to them:
audio chunks shrink to the whole hops that fit (one hop per message is enough), and a request
that cannot fit or a mode the board does not list is reported, never sent.

``stream_clip`` sends a clip as contiguous AUDIO_CHUNKs and puts every SEPARATED_CHUNK at its
stream position; it checks that each position arrives exactly once, so a lost or duplicated
frame cannot go unnoticed. When the board restarts (``PeerRestarted``) or stops answering for
a while (``LinkTimeout``) during any request of the session (INFO, the tensor check, an upload
or a clip), the session reconnects, checks the board's model again and repeats the request (a
clip is replayed from position 0: the model state of the lost run is gone, so only a full
replay gives the same output). It gives up with ``HilError`` when one request used up its
``RecoveryBudget``: a number of recoveries and a time since its first fault.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import numpy as np

from firmware_host.bundle import Bundle
from firmware_host.protocol.errors import LinkTimeout, PeerError, PeerRestarted, ProtocolError
from firmware_host.protocol.link import Link, LinkConfig
from firmware_host.protocol.messages import (
    CAP_AUDIO,
    CAP_TENSOR,
    CAP_UPLOAD,
    AudioChunk,
    Info,
    SeparatedChunk,
)
from firmware_host.transport import DEFAULT_BAUD, open_port
from hil.client import BoardClient

DEFAULT_CHUNK_HOPS = 8  # 1024 samples, 64 ms: 1.8 % protocol overhead (docs/protocol.md)
MANIFEST_KEYS = ("audio", "sources", "input", "output", "states")
AUDIO_CHUNK_HEAD = AudioChunk._HEAD.size  # bytes before the samples of an AUDIO_CHUNK
SEPARATED_CHUNK_HEAD = SeparatedChunk._HEAD.size
CAPABILITY_NAMES = ((CAP_AUDIO, "audio"), (CAP_TENSOR, "tensor"), (CAP_UPLOAD, "upload"))


class UploadRefused(RuntimeError):
    """The upload was not started: the board cannot take this bundle's model, or would
    then be refused by the harness (nothing was sent)."""


class HilError(RuntimeError):
    """The harness cannot go on: says what happened and what to do."""


@dataclass
class RecoveryBudget:
    """When the session stops recovering one request (a clip, a tensor invoke, an upload, INFO).

    After each board restart or stall the request is resumed (a clip from shortly before the
    first chunk not yet returned) or repeated. The session gives up after ``max_recoveries``
    recoveries in a row without progress (no new chunk of the clip came back between them)
    or ``max_seconds`` since the last progress, whichever comes first: a board that keeps
    failing at the same place is given up on, one that faults at random but moves on is
    carried through. Measured figures: docs/bundle.md, "Board faults, recovery and exit status".
    """

    max_recoveries: int = 12
    max_seconds: float = 300.0

    def text(self) -> str:
        return (f"{self.max_recoveries} recoveries or {self.max_seconds:.0f} s without "
                "progress per request")


@dataclass
class BoardLimits:
    """What the board announced: its HELLO limits and the capabilities listed in INFO.

    A board that holds at most ``max_message`` bytes per message is taken to build replies
    no larger either, so requests are sized for both directions.
    """

    max_payload: int
    max_message: int
    window: int
    capabilities: int

    def has(self, capability: int) -> bool:
        return bool(self.capabilities & capability)

    def capability_names(self) -> list:
        return [name for bit, name in CAPABILITY_NAMES if self.capabilities & bit]

    def as_dict(self) -> dict:
        return {
            "max_payload": self.max_payload,
            "max_message": self.max_message,
            "window": self.window,
            "capabilities": self.capability_names(),
        }


def fitting_chunk_hops(requested: int, hop: int, n_sources: int, max_message: int) -> int:
    """The most whole hops (at most ``requested``) whose AUDIO_CHUNK and SEPARATED_CHUNK both
    fit in ``max_message`` bytes. When not even one hop's reply fits (four sources in 1 KiB),
    the board sends each reply in parts and only the request bounds the chunk; 0 when not even
    one hop of request, or one sample of every source, fits."""
    by_request = (max_message - AUDIO_CHUNK_HEAD) // (2 * hop)
    by_reply = (max_message - SEPARATED_CHUNK_HEAD) // (2 * hop * max(1, n_sources))
    if by_reply < 1 and max_message >= SEPARATED_CHUNK_HEAD + 2 * max(1, n_sources):
        by_reply = by_request
    return max(0, min(requested, by_request, by_reply))


def reply_parts(samples: int, n_sources: int, max_message: int | None) -> int:
    """How many SEPARATED_CHUNK parts the reply to a chunk of ``samples`` comes in."""
    if max_message is None:
        return 1
    reply = SeparatedChunk(0, np.zeros((max(1, n_sources), samples), np.int16))
    return len(reply.parts(max_message))


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
    resumed_from: list = field(default_factory=list)  # stream position of every resume
    warmup_chunks: int = 0  # chunks streamed again only to rebuild the board's state


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


class _ClipState:
    """What came back of one clip so far, across resumes."""

    def __init__(self, n_sources: int, count: int, chunk: int) -> None:
        self.out = np.zeros((n_sources, count * chunk), dtype=np.int16)
        self.seen = np.zeros(count, dtype=bool)
        self.done = 0  # chunks 0..done-1 came back (always a prefix: replies are in order)
        self.invoke_us = {}
        self.invokes = 0
        self.warmup = 0  # chunks streamed again only to rebuild the board's state
        self.resumes = []  # first chunk of every attempt


def _resume_chunk(done: int, warm_hops: int, chunk_hops: int, frames_per_invoke: int) -> int:
    """The chunk to resume from: at least ``warm_hops`` before chunk ``done``, starting on an
    invoke boundary (a multiple of K hops), or 0."""
    begin = (done * chunk_hops - warm_hops) // chunk_hops
    while begin > 0 and (begin * chunk_hops) % frames_per_invoke:
        begin -= 1
    return max(0, begin)


MODEL_FIELDS = ("scale", "zero_point")  # manifest tensor fields an upload takes from the model


def _tensor_entries(manifest: dict):
    yield "input", manifest.get("input")
    yield "output", manifest.get("output")
    for number, state in enumerate(manifest.get("states") or []):
        if isinstance(state, dict):
            yield f"states[{number}]", state


def differences_after_upload(board_manifest, bundle: Bundle) -> list:
    """Fields in which the board's manifest would still differ from ``bundle``'s after the
    bundle's model is uploaded (an upload rewrites only the model's sha256, size, scales,
    zero points and requantize rules; the rest of the board's manifest stays). Empty: the
    harness will accept the board after the upload. None: the board sent no manifest."""
    if not isinstance(board_manifest, dict):
        return None
    local = json.loads(bundle.manifest_text)
    predicted = json.loads(json.dumps(board_manifest))
    local_entries = dict(_tensor_entries(local))
    for where, entry in _tensor_entries(predicted):
        source = local_entries.get(where)
        if not isinstance(entry, dict) or not isinstance(source, dict):
            continue
        if where.startswith("states"):
            if "requantize" in source:
                entry["requantize"] = source["requantize"]
            for side in ("input", "output"):
                if isinstance(entry.get(side), dict) and isinstance(source.get(side), dict):
                    for field in MODEL_FIELDS:
                        if field in source[side]:
                            entry[side][field] = source[side][field]
        else:
            for field in MODEL_FIELDS:
                if field in source:
                    entry[field] = source[field]
    problems = []
    for key in MANIFEST_KEYS:
        if predicted.get(key) == local.get(key):
            continue
        if isinstance(predicted.get(key), dict) and isinstance(local.get(key), dict):
            fields = sorted(
                name
                for name in set(predicted[key]) | set(local[key])
                if predicted[key].get(name) != local[key].get(name)
            )
            problems.append(f"{key} ({', '.join(fields)})")
        else:
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
        max_recoveries: int | None = None,
        budget: RecoveryBudget | None = None,
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
        self.budget = budget if budget is not None else RecoveryBudget()
        if max_recoveries is not None:
            self.budget.max_recoveries = max_recoveries
        self.info = None
        self.bundle = None
        self.limits = None
        self.recoveries = []  # every recovery of the session: during what, kind, detail
        self.started = time.monotonic()
        self.counters_at_start = _counters(self.link)

    @property
    def max_recoveries(self) -> int:
        """Recoveries one request may use (see ``RecoveryBudget``)."""
        return self.budget.max_recoveries

    def counters(self) -> dict:
        """Link counters since the session was opened (resends, timeouts, restarts ...)."""
        return _delta(self.counters_at_start, _counters(self.link))

    def _read_limits(self) -> None:
        peer = self.link.peer
        if peer is None:
            return
        self.limits = BoardLimits(
            int(peer.max_payload),
            int(min(peer.max_message, self.link.config.max_message)),
            int(peer.window),
            int(getattr(self.info, "capabilities", CAP_AUDIO | CAP_TENSOR | CAP_UPLOAD)),
        )

    def chunk_hops(self, requested: int, bundle: Bundle | None = None) -> int:
        """Hops per audio chunk for this board: ``requested`` or fewer, so both the chunk and
        its reply fit the board's max message; HilError when not even one hop fits."""
        bundle = bundle or self.bundle
        if self.limits is None or bundle is None:
            return requested
        hops = fitting_chunk_hops(
            requested, bundle.hop, len(bundle.sources), self.limits.max_message
        )
        if hops < 1:
            need = max(
                AUDIO_CHUNK_HEAD + 2 * bundle.hop,
                SEPARATED_CHUNK_HEAD + 2 * len(bundle.sources),
            )
            raise HilError(
                f"the board holds messages of at most {self.limits.max_message} bytes, one hop "
                f"of audio ({bundle.hop} samples, {len(bundle.sources)} sources back) needs "
                f"{need}: it cannot stream this bundle"
            )
        return hops

    def _note_recovery(self, what: str, exc: Exception) -> None:
        kind = "board restarted" if isinstance(exc, PeerRestarted) else "timeout"
        self.recoveries.append(
            {
                "during": what,
                "kind": kind,
                "detail": str(exc),
                "at_seconds": round(time.monotonic() - self.started, 3),
            }
        )

    def recovering(self, what: str, operation, progress_mark=None):
        """Run ``operation()``; after a board restart or stall reconnect and run it again,
        within the budget. ``progress_mark()`` (optional) returns how far the request got: a
        rise between two faults starts the budget afresh."""
        since = None  # when the budget started: the first fault after the last progress
        used = 0
        mark = progress_mark() if progress_mark is not None else None
        while True:
            try:
                return operation()
            except (PeerRestarted, LinkTimeout) as exc:
                now = time.monotonic()
                if progress_mark is not None and progress_mark() != mark:
                    mark = progress_mark()
                    since, used = None, 0
                since = now if since is None else since
                budget = self.budget
                if used >= budget.max_recoveries or now - since > budget.max_seconds:
                    raise HilError(
                        f"gave up on {what} after {used} recoveries without progress in "
                        f"{now - since:.1f} s (budget: {budget.text()}); last: {exc}"
                    ) from None
                used += 1
                self._note_recovery(what, exc)
                self.reconnect()

    def connect(self) -> Info:
        """Open a session and read INFO; a silent board raises HilError naming the port.

        A restart or a stall after the board answered HELLO (while INFO is read) is recovered
        by reconnecting.
        """
        try:
            self.info = self.client.connect(timeout=self.connect_timeout)
        except (LinkTimeout, PeerRestarted) as exc:
            if _hello_unanswered(exc):
                raise HilError(
                    f"no board agent answers on {self.port or 'the stream'}: {exc}. Is the "
                    "agent running (python3 -m firmware_host.board --port ... --bundle ...) "
                    "and the baud right?"
                ) from None
            self._note_recovery("INFO", exc)
            self.reconnect()
        self._read_limits()
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
        if self.limits is not None and not self.limits.has(CAP_AUDIO):
            raise HilError(
                "the board's INFO does not list audio streaming (capabilities: "
                + (", ".join(self.limits.capability_names()) or "none")
                + "): nothing to test"
            )
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
        """A new session after a restart or a stall; checks the model again.

        A board that restarts again while INFO is read is asked again, until
        ``connect_timeout`` passed without an answer.
        """
        deadline = time.monotonic() + self.connect_timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                self.info = self.client.connect(timeout=max(0.1, remaining))
                break
            except (LinkTimeout, PeerRestarted) as exc:
                if time.monotonic() < deadline and not _hello_unanswered(exc):
                    continue
                raise HilError(
                    f"the board stopped answering and did not come back within "
                    f"{self.connect_timeout:.1f} s: {exc}"
                ) from None
        self._read_limits()
        if self.bundle is not None:
            self.check(self.bundle)
        return self.info

    def resume_hops(self, bundle: Bundle | None = None):
        """Hops of audio that rebuild the board's whole streaming state after a restart, or
        None when it cannot be rebuilt (a recurrent state remembers the whole clip).

        Every ``context`` state holds the last frames of its layer's input, so the model's
        state depends only on the last (sum of the context lengths) frames; the STFT adds
        n_fft / hop frames of overlap and an invoke K frames. Replaying that much audio before
        the first missing chunk gives the same output as an uninterrupted stream.
        """
        bundle = bundle or self.bundle
        try:
            states = json.loads(bundle.manifest_text).get("states") or []
        except ValueError:
            return None
        frames = 0
        for state in states:
            shape = state.get("shape") if isinstance(state, dict) else None
            if state.get("kind") != "context" or not isinstance(shape, list) or len(shape) < 2:
                return None
            frames += max([int(d) for d in shape[1:-1]] or [1])
        overlap = -(-bundle.n_fft // bundle.hop)
        return frames + overlap + 2 * bundle.frames_per_invoke

    def stream_clip(
        self, pcm: np.ndarray, chunk_hops: int = DEFAULT_CHUNK_HOPS, progress=None
    ) -> StreamResult:
        """Separate int16 ``pcm`` on the board; output aligned to the input, same length.

        After a restart or a stall the clip resumes a few chunks before the first chunk not
        yet returned (``resume_hops``), or from position 0 when the state cannot be rebuilt.
        ``progress(samples)`` is called as new chunks come back.
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
        start = time.perf_counter()
        before = _counters(self.link)
        first = len(self.recoveries)
        state = _ClipState(len(bundle.sources), padded.size // chunk, chunk)
        warm = self.resume_hops(bundle)

        def attempt():
            begin = 0
            if state.done and warm is not None:
                begin = _resume_chunk(state.done, warm, chunk_hops, bundle.frames_per_invoke)
            state.resumes.append(begin)
            return self._stream_from(padded, chunk, progress, state, begin)

        self.recovering("a clip", attempt, lambda: state.done)
        recoveries = self.recoveries[first:]
        wall = time.perf_counter() - start
        aligned = state.out[:, delay : delay + pcm.size]
        return StreamResult(
            aligned,
            total // chunk,
            [state.invoke_us[i] for i in sorted(state.invoke_us)],
            state.invokes,
            wall,
            _delta(before, _counters(self.link)),
            recoveries,
            [begin * chunk for begin in state.resumes[1:]],
            state.warmup,
        )

    def _stream_from(self, padded: np.ndarray, chunk: int, progress, state, begin: int):
        """Reset the board and stream chunks ``begin``.. of ``padded`` (board positions from 0);
        chunks before ``state.done`` only warm the board's state up and are not kept."""
        n_sources = len(self.bundle.sources)
        count = padded.size // chunk
        self.client.reset_state()
        chunks = (
            AudioChunk((i - begin) * chunk, padded[i * chunk : (i + 1) * chunk])
            for i in range(begin, count)
        )
        expected = 0
        for reply in self.client.stream(chunks):
            if reply.position != expected or reply.position % chunk:
                raise ProtocolError(
                    f"SEPARATED_CHUNK at position {reply.position}, expected {expected}"
                )
            if reply.sources.shape != (n_sources, chunk):
                raise ProtocolError(
                    f"SEPARATED_CHUNK at {reply.position} has shape {reply.sources.shape}, "
                    f"expected {(n_sources, chunk)}"
                )
            index = begin + reply.position // chunk
            expected += chunk
            if index < state.done:
                state.warmup += 1
                continue
            if state.seen[index]:
                raise ProtocolError(f"position {index * chunk} arrived twice")
            state.seen[index] = True
            state.out[:, index * chunk : (index + 1) * chunk] = reply.sources
            if reply.n_invokes:
                state.invoke_us[index] = reply.invoke_us / reply.n_invokes
            state.invokes += reply.n_invokes
            state.done = index + 1
            if progress is not None:
                progress(state.done * chunk)
        if not state.seen.all():
            missing = [int(i) * chunk for i in np.flatnonzero(~state.seen)[:5]]
            raise ProtocolError(f"no SEPARATED_CHUNK for positions {missing}")

    def refuse_unfit_upload(self, bundle: Bundle) -> None:
        """HilError when uploading ``bundle``'s model would leave a board the harness refuses
        (its manifest differs beyond what an upload rewrites)."""
        try:
            board_manifest = self.info.manifest
        except ValueError:
            board_manifest = None
        problems = differences_after_upload(board_manifest, bundle)
        if problems is None and not self.info.manifest_json:
            raise UploadRefused("the board holds no bundle manifest (a blank board): an upload "
                                "replaces only the model of a bundle already on the board; "
                                "copy the whole bundle folder to it")
        if problems:
            raise UploadRefused(
                f"the board's bundle differs from {bundle.folder} in {'; '.join(problems)}: an "
                "upload replaces only the model (and its scales), so the harness would still "
                "refuse the board; copy the whole bundle folder to the board instead"
            )

    def upload(self, data: bytes, progress=None):
        """Upload a model file and refresh INFO (see ``BoardClient.upload``); a restart or a
        stall mid-upload starts the upload again (the board discards a partial one)."""
        if self.limits is not None and not self.limits.has(CAP_UPLOAD):
            raise UploadRefused("the board's INFO does not list the upload capability: flash it "
                           "with its own tools")

        def once():
            done = self.client.upload(data, progress=progress)
            self.info = self.client.info()
            return done

        done = self.recovering("the upload", once)
        self._read_limits()
        return done

    def close(self) -> None:
        self.link.close(close_stream=True)


    def __enter__(self) -> BoardSession:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _hello_unanswered(exc: Exception) -> bool:
    """True when ``exc`` says the peer never answered HELLO (no board, not a stall)."""
    return isinstance(exc, LinkTimeout) and "HELLO" in getattr(exc, "waiting_for", "")
