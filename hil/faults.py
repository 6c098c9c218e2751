"""A relay that forwards bytes between two streams frame by frame, damaging some on purpose.

Used by the link and HIL fault tests on real pseudo-terminals: corrupt a bit, drop or truncate
bytes, inject line noise, lose or duplicate a whole frame, or stall the line. Faults are chosen
per frame (bytes up to a 0x00 delimiter) from a seeded generator, so runs are repeatable in kind.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

from firmware_host.protocol.cobs import CobsError, cobs_decode
from firmware_host.protocol.errors import LinkClosed
from firmware_host.protocol.messages import LINK_TYPES
from hil.emulator import PtyPair

FAULT_KINDS = ("corrupt", "drop", "truncate", "garbage", "lose", "duplicate", "stall")


@dataclass
class FaultPlan:
    """Which frames of one direction to damage and how."""

    kinds: tuple = FAULT_KINDS  # fault kinds, used in turn
    every: int = 0  # damage every Nth frame (0: use ``rate``)
    rate: float = 0.0  # else damage each frame with this probability
    seed: int = 0
    skip_first: int = 0  # eligible frames passed untouched first (e.g. the HELLO exchange)
    max_faults: int | None = None  # stop injecting after this many
    stall_seconds: float = 0.05
    data_only: bool = False  # damage only sequenced (data) frames, never HELLO/ACK/NAK

    def __post_init__(self) -> None:
        unknown = [kind for kind in self.kinds if kind not in FAULT_KINDS]
        if unknown or not self.kinds:
            raise ValueError(
                f"fault kinds must be a non-empty subset of {FAULT_KINDS}, got {self.kinds!r}"
            )


@dataclass
class DirectionStats:
    """What the relay did in one direction."""

    frames: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    faults: dict = field(default_factory=dict)

    @property
    def total_faults(self) -> int:
        return sum(self.faults.values())


class _Direction:
    def __init__(self, name: str, plan: FaultPlan | None, tap) -> None:
        self.name = name
        self.plan = plan
        self.tap = tap
        self.rng = random.Random(plan.seed if plan else 0)
        self.stats = DirectionStats()
        self.turn = 0
        self.eligible = 0  # frames the plan may damage, seen so far
        self.buffer = bytearray()

    def process(self, data: bytes) -> list:
        """Split into delimited segments; returns (bytes to write, seconds to stall first) items."""
        self.stats.bytes_in += len(data)
        out = []
        self.buffer += data
        while True:
            end = self.buffer.find(0)
            if end < 0:
                break
            segment = bytes(self.buffer[: end + 1])
            del self.buffer[: end + 1]
            if len(segment) == 1:
                out.append((segment, 0.0))  # a bare delimiter
                continue
            self.stats.frames += 1
            if self.tap is not None:
                self.tap(self.name, segment)
            out.extend(self._damage(segment))
        return out

    def _eligible(self, segment: bytes) -> bool:
        plan = self.plan
        if plan is None:
            return False
        if plan.data_only:
            try:
                raw = cobs_decode(segment[:-1])
            except CobsError:
                return False
            if len(raw) < 2 or raw[1] in LINK_TYPES:
                return False
        self.eligible += 1
        return self.eligible > plan.skip_first

    def _pick(self, segment: bytes):
        plan = self.plan
        if not self._eligible(segment):
            return None
        if plan.max_faults is not None and self.stats.total_faults >= plan.max_faults:
            return None
        if plan.every:
            hit = (self.eligible - plan.skip_first) % plan.every == 0
        else:
            hit = self.rng.random() < plan.rate
        if not hit:
            return None
        kind = plan.kinds[self.turn % len(plan.kinds)]
        self.turn += 1
        self.stats.faults[kind] = self.stats.faults.get(kind, 0) + 1
        return kind

    def _damage(self, segment: bytes) -> list:
        kind = self._pick(segment)
        rng = self.rng
        body = bytearray(segment[:-1])
        if kind is None:
            return [(segment, 0.0)]
        if kind == "corrupt":
            index = rng.randrange(len(body))
            body[index] ^= 1 << rng.randrange(8)
            return [(bytes(body) + b"\x00", 0.0)]
        if kind == "drop":
            index = rng.randrange(len(body))
            del body[index : index + rng.randint(1, 3)]
            return [(bytes(body) + b"\x00", 0.0)]
        if kind == "truncate":
            return [(bytes(body[: rng.randrange(1, max(2, len(body)))]) + b"\x00", 0.0)]
        if kind == "garbage":  # noise with zeros inside, glued to the frame so it spoils it
            noise = [rng.choice((0, rng.randrange(256))) for _ in range(rng.randint(1, 40))]
            noise.append(rng.randrange(1, 256))
            return [(bytes(noise) + segment, 0.0)]
        if kind == "lose":
            return []
        if kind == "duplicate":
            return [(segment, 0.0), (segment, 0.0)]
        return [(segment, self.plan.stall_seconds)]  # stall


class FaultyRelay:
    """Forwards ``a`` <-> ``b`` (byte streams) in two threads, applying a FaultPlan per direction.

    ``tap(direction, segment)`` (optional) sees every undamaged frame, e.g. to check flow control.
    """

    def __init__(
        self, a, b, a_to_b: FaultPlan | None = None, b_to_a: FaultPlan | None = None, tap=None
    ) -> None:
        self._a = a
        self._b = b
        self._running = True
        self.forward = _Direction("a->b", a_to_b, tap)
        self.backward = _Direction("b->a", b_to_a, tap)
        self._threads = [
            threading.Thread(target=self._pump, args=(a, b, self.forward), daemon=True),
            threading.Thread(target=self._pump, args=(b, a, self.backward), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _pump(self, src, dst, direction: _Direction) -> None:
        while self._running:
            try:
                data = src.read(65536)
            except (OSError, ValueError, LinkClosed):
                return
            if not data:
                continue
            for chunk, stall in direction.process(data):
                if stall:
                    time.sleep(stall)
                try:
                    dst.write(chunk)
                except (OSError, ValueError, LinkClosed):
                    return
                direction.stats.bytes_out += len(chunk)

    def close(self) -> None:
        """Stop forwarding (threads end within one read poll interval)."""
        self._running = False
        for thread in self._threads:
            thread.join(timeout=2.0)


class PtyRelay:
    """Two pseudo-terminal pairs joined by a FaultyRelay: host end <-> relay <-> board end.

    The host opens ``host_path`` (pyserial or ``open_tty``) or uses ``host_stream()``; the board
    uses ``board_stream()`` or ``board_path``.
    """

    def __init__(
        self, to_board: FaultPlan | None = None, to_host: FaultPlan | None = None, tap=None
    ) -> None:
        self.host_pair = PtyPair()
        self.board_pair = PtyPair()
        self.host_path = self.host_pair.slave_path
        self.board_path = self.board_pair.slave_path
        self.relay = FaultyRelay(
            self.host_pair.master_stream(), self.board_pair.master_stream(), to_board, to_host, tap
        )

    def host_stream(self):
        return self.host_pair.slave_stream()

    def board_stream(self):
        return self.board_pair.slave_stream()

    @property
    def to_board(self) -> DirectionStats:
        return self.relay.forward.stats

    @property
    def to_host(self) -> DirectionStats:
        return self.relay.backward.stats

    def close(self) -> None:
        self.relay.close()
        self.host_pair.close()
        self.board_pair.close()

    def __enter__(self) -> PtyRelay:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
