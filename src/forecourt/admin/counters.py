"""Kong's `/status` server counters, summed across the worker processes of a node.

Per request the proxy only increments two Python ints on its `GatewayRuntime`
(`connections_accepted`, `total_requests`); the connection-state gauges are derived from the
runtime's live connection set when sampled. Any worker may answer an admin request, so each worker
publishes its samples every 100 ms into its own *slot* of one memory-mapped file in the run's state
directory (`status-counters`), and the answering worker sums the slots.

Slot layout (little-endian): `pid i64 | published_at f64 | rss u64`, then for each gateway (by its
position on the command line, every worker runs the same files) the seven counters of
`ServerCounters`. A worker claims a free slot under an exclusive `flock` on the file: an empty one,
or the slot of a dead worker, whose cumulative counters it carries on (a restarted worker does not
reset the node's totals, as nginx's shared-memory counters do not). Readers skip the gauges of dead
workers and take their own slot from live values, so the answering worker is never 100 ms behind.
Reads are lock-free: a torn read of a slot mixes two consecutive samples, which is fine for monitoring.
"""

from __future__ import annotations

import asyncio
import fcntl
import mmap
import os
import resource
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from forecourt.runtime import GatewayRuntime

__all__ = ["COUNTER_FILE", "CounterBoard", "ServerCounters", "StatusPublisher", "WorkerSample", "sample"]

COUNTER_FILE = "status-counters"
MAX_SLOTS = 256
MAX_GATEWAYS = 32
PUBLISH_INTERVAL = 0.1

_HEAD = struct.Struct("<qdQ")
_COUNTERS = struct.Struct("<7Q")
SLOT_SIZE = 2048
assert _HEAD.size + MAX_GATEWAYS * _COUNTERS.size <= SLOT_SIZE


@dataclass(slots=True)
class ServerCounters:
    """Kong's `server` block of `/status` (nginx's stub_status counters)."""

    connections_accepted: int = 0
    connections_handled: int = 0
    total_requests: int = 0
    connections_active: int = 0
    connections_reading: int = 0
    connections_writing: int = 0
    connections_waiting: int = 0

    def add(self, other: ServerCounters, *, gauges: bool = True) -> None:
        self.connections_accepted += other.connections_accepted
        self.connections_handled += other.connections_handled
        self.total_requests += other.total_requests
        if gauges:
            self.connections_active += other.connections_active
            self.connections_reading += other.connections_reading
            self.connections_writing += other.connections_writing
            self.connections_waiting += other.connections_waiting

    def as_tuple(self) -> tuple[int, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def sample(runtime: GatewayRuntime | None) -> ServerCounters:
    """One gateway's counters in this worker, now (a pass over its open connections)."""
    if runtime is None:
        return ServerCounters()
    reading = writing = 0
    for client in runtime.clients:
        if client.exchange is not None or client.queue:
            writing += 1
        elif client.parsing is not None:
            reading += 1
    active = len(runtime.clients)
    return ServerCounters(
        connections_accepted=runtime.connections_accepted,
        connections_handled=runtime.connections_accepted,
        total_requests=runtime.total_requests,
        connections_active=active,
        connections_reading=reading,
        connections_writing=writing,
        connections_waiting=active - reading - writing,
    )


def resident_bytes() -> int:
    """This process's resident set size (falls back to the peak where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass(slots=True)
class WorkerSample:
    """What one slot says about one worker."""

    pid: int
    alive: bool
    rss: int
    gateways: list[ServerCounters]


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class CounterBoard:
    """This worker's view of the shared slot file: it writes one slot and reads all of them."""

    def __init__(self, state_dir: Path, gateways: int, *, pid: int | None = None) -> None:
        self.path = state_dir / COUNTER_FILE
        self.gateways = min(gateways, MAX_GATEWAYS)
        self.pid = os.getpid() if pid is None else pid
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.fstat(fd).st_size < MAX_SLOTS * SLOT_SIZE:
                    os.ftruncate(fd, MAX_SLOTS * SLOT_SIZE)
                self._map = mmap.mmap(fd, MAX_SLOTS * SLOT_SIZE)
                self.slot, self._base = self._claim()
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _claim(self) -> tuple[int, list[ServerCounters]]:
        """A free slot (or a dead worker's, whose cumulative counters become our base)."""
        for index in range(MAX_SLOTS):
            pid = _HEAD.unpack_from(self._map, index * SLOT_SIZE)[0]
            if pid != self.pid and _alive(pid):
                continue
            previous = self._read_slot(index)
            _HEAD.pack_into(self._map, index * SLOT_SIZE, self.pid, 0.0, 0)
            base = [ServerCounters() for _ in range(self.gateways)]
            for mine, old in zip(base, previous.gateways, strict=False):
                mine.add(old, gauges=False)
            return index, base
        raise OSError(f"{self.path}: all {MAX_SLOTS} counter slots are taken by live workers")

    def _read_slot(self, index: int) -> WorkerSample:
        offset = index * SLOT_SIZE
        pid, _, rss = _HEAD.unpack_from(self._map, offset)
        counters = [
            ServerCounters(*_COUNTERS.unpack_from(self._map, offset + _HEAD.size + i * _COUNTERS.size))
            for i in range(self.gateways)
        ]
        return WorkerSample(pid, _alive(pid), rss, counters)

    def totals(self, live: Sequence[ServerCounters]) -> list[ServerCounters]:
        """`live` (this worker's own samples) with the cumulative base of a reused slot added."""
        result = []
        for index, counters in enumerate(live[: self.gateways]):
            total = ServerCounters()
            total.add(counters)
            total.add(self._base[index], gauges=False)
            result.append(total)
        return result

    def publish(self, live: Sequence[ServerCounters], rss: int, now: float) -> None:
        offset = self.slot * SLOT_SIZE
        for index, counters in enumerate(self.totals(live)):
            _COUNTERS.pack_into(self._map, offset + _HEAD.size + index * _COUNTERS.size, *counters.as_tuple())
        _HEAD.pack_into(self._map, offset, self.pid, now, rss)

    def others(self) -> list[WorkerSample]:
        """Every other worker that ever published (dead ones too: their cumulative counters count)."""
        found = []
        for index in range(MAX_SLOTS):
            if index == self.slot:
                continue
            pid = _HEAD.unpack_from(self._map, index * SLOT_SIZE)[0]
            if pid != 0:
                found.append(self._read_slot(index))
        return found

    def close(self) -> None:
        self._map.close()


class StatusPublisher:
    """Samples this worker's gateways and answers `/status` totals for the whole node.

    Without a state directory (a single process, or no supervisor) the totals are this process's own.
    """

    def __init__(
        self,
        runtimes: Callable[[], Sequence[GatewayRuntime | None]],
        state_dir: Path | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._runtimes = runtimes
        self._loop = loop
        count = len(runtimes())
        self.board = CounterBoard(state_dir, count) if state_dir is not None else None
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self.board is not None:
            self._tick()

    def _tick(self) -> None:
        assert self.board is not None
        self.board.publish(self.local(), resident_bytes(), self._loop.time())
        self._timer = self._loop.call_later(PUBLISH_INTERVAL, self._tick)

    def local(self) -> list[ServerCounters]:
        return [sample(runtime) for runtime in self._runtimes()]

    def workers(self) -> list[WorkerSample]:
        """One sample per worker of the node, this one first (live values)."""
        live = self.local()
        own = self.board.totals(live) if self.board is not None else live
        samples = [WorkerSample(os.getpid(), True, resident_bytes(), own)]
        if self.board is not None:
            samples.extend(self.board.others())
        return samples

    def totals(self, gateway: int | None = None) -> ServerCounters:
        """The node's counters: every gateway summed, or only the one at position `gateway`."""
        total = ServerCounters()
        for worker in self.workers():
            chosen = worker.gateways if gateway is None else worker.gateways[gateway : gateway + 1]
            for counters in chosen:
                total.add(counters, gauges=worker.alive)
        return total

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.board is not None:
            self.board.close()
            self.board = None
