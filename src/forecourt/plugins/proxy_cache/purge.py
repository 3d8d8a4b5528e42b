"""Purges reaching every worker process: a small shared purge log in the run's state directory.

The `memory` strategy keeps one store per worker process (workers are forked; the stores are plain
Python objects). The admin API request that purges is answered by *one* worker, so that worker
also appends the purge to a log every worker maps (`mmap`, `MAP_SHARED`):

    header  16 bytes: magic "FCPURGE1", generation u64 (the number of purges ever logged)
    ring    RING_SLOTS x 128 bytes: generation u64, key length u8, key (≤ 119 bytes; "*" = all)

Each memory store remembers the last generation it applied and compares it with the header on
every lookup: one 8-byte read from shared memory, no system call. When it moved, the store applies
the logged purges it missed; when more than `RING_SLOTS` were logged since (or a slot was
overwritten meanwhile), it purges everything, which is always safe for a cache. Writers append
under a POSIX record lock (`lockf`) on the file, which the kernel drops if a writer dies.

So a purge is visible in every worker at its next cache lookup. Without a state directory (an
in-process gateway in tests) the log is not shared and purges stay in the process, where they are
applied directly.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import struct
from pathlib import Path

__all__ = ["ALL", "PurgeLog"]

log = logging.getLogger(__name__)

ALL = "*"
_MAGIC = b"FCPURGE1"
_HEADER = struct.Struct("<8sQ")
_SLOT = struct.Struct("<QB119s")
RING_SLOTS = 256
_SIZE = _HEADER.size + RING_SLOTS * _SLOT.size

_open_logs: dict[str, PurgeLog] = {}


class PurgeLog:
    """One gateway's purge log, shared by the worker processes of a run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
            try:
                if os.fstat(fd).st_size < _SIZE:
                    os.ftruncate(fd, _SIZE)
                    os.pwrite(fd, _HEADER.pack(_MAGIC, 0), 0)
            finally:
                fcntl.lockf(fd, fcntl.LOCK_UN)
            self._map = mmap.mmap(fd, _SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        magic, _ = _HEADER.unpack_from(self._map, 0)
        if magic != _MAGIC:
            raise OSError(f"{path} is not a proxy-cache purge log")

    @classmethod
    def for_gateway(cls, state_dir: Path | None, gateway: str) -> PurgeLog | None:
        """The process's log for `gateway` (one per file per process: record locks are per process)."""
        if state_dir is None:
            return None
        path = state_dir / f"proxy-cache-{gateway or 'default'}.purges"
        found = _open_logs.get(str(path))
        if found is None:
            try:
                found = cls(path)
            except OSError as exc:
                log.error(
                    "proxy-cache: cannot open the purge log %s (%s); purges stay in this worker", path, exc
                )
                return None
            _open_logs[str(path)] = found
        return found

    @property
    def generation(self) -> int:
        generation: int = _HEADER.unpack_from(self._map, 0)[1]
        return generation

    def append(self, key: str) -> int:
        """Log a purge of `key` (or of everything, `ALL`) for the other workers; the new generation."""
        data = key.encode("utf-8", "surrogateescape")
        if len(data) > 119:
            return self.generation  # longer than any key this plugin makes: no worker holds it
        fcntl.lockf(self._fd, fcntl.LOCK_EX)
        try:
            generation = self.generation + 1
            _SLOT.pack_into(
                self._map, _HEADER.size + (generation % RING_SLOTS) * _SLOT.size, generation, len(data), data
            )
            _HEADER.pack_into(self._map, 0, _MAGIC, generation)
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
        return generation

    def since(self, seen: int) -> tuple[int, list[str] | None]:
        """(current generation, keys purged after `seen`); None instead of keys means "purge all"."""
        current = self.generation
        if current == seen:
            return current, []
        if current - seen > RING_SLOTS or current < seen:
            return current, None
        keys: list[str] = []
        for generation in range(seen + 1, current + 1):
            slot_gen, length, raw = _SLOT.unpack_from(
                self._map, _HEADER.size + (generation % RING_SLOTS) * _SLOT.size
            )
            if slot_gen != generation:
                return current, None  # overwritten (or being written): purge everything
            key = raw[:length].decode("utf-8", "surrogateescape")
            if key == ALL:
                return current, None
            keys.append(key)
        return current, keys
