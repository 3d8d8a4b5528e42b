"""Node-local counters shared by every worker process of a run: a hash table in a mapped file.

Workers are forked processes, so a dict per process would let each worker grant the full limit. The
counters live instead in one file in the run's state directory, mapped with `mmap(MAP_SHARED)` by
every worker; a write by one is seen by all at once, without a server or a round trip.

Layout (little endian):

    header   64 bytes: magic, layout version, stripe count, slots per stripe, probe length
    slots    stripes x slots_per_stripe x 32 bytes: (key hash u64, window start i64,
             window end i64, count i64); a key hash of 0 marks a never-used slot

A counter is identified by the 64-bit BLAKE2b hash of its key salted with the period, not by the
window: the slot of `(key, minute)` is reused for every minute, and a take that finds an older
window in it starts again from 0. So a steady client costs one slot per period, and windows never
pile up.

Concurrency. The table is split into stripes; all periods of one key hash into the same stripe, so
one take (check every window, then count them all) runs under one lock. The lock is a POSIX record
lock (`fcntl.lockf`) on one byte per stripe: it works across unrelated processes, needs no setup
before fork, and the kernel releases it if a worker dies while holding it, so a crash can never
wedge the table. Record locks belong to the process, and closing any descriptor of the file drops
them: hence one `SharedCounterTable` per file per process (`open()` caches it). Without a state
directory the table is a private, unlinked temporary file and takes no lock until the process
forks (a fork marks every private table shared).

Reclamation. Linear probing stays within a stripe and looks at most `probe` slots. A slot whose
window has ended is free for any key; lookups only stop at a never-used slot, so a key is always
found where it was put. When all probed slots hold live windows (a table sized far too small for
its key set), the slot whose window ends first is taken over, which resets that counter — the
same trade Kong's LRU-evicting shared dict makes; it is logged.

Cost: one BLAKE2b hash, two `fcntl` system calls and a struct read/write per period, about 3 µs
per take with one period on a 2020s x86 core (`tests/state/test_shared_table.py` measures it).
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import struct
import tempfile
import time
import weakref
from collections.abc import Sequence
from hashlib import blake2b
from pathlib import Path

from forecourt.state.counters import StoreError, Usage, Window

log = logging.getLogger(__name__)

_MAGIC = b"FCCOUNT1"
_HEADER = struct.Struct("<8sIIII16s")  # magic, version, stripes, slots per stripe, probe, hash key
_VERSION = 1
_HEADER_SIZE = 64
_SLOT = struct.Struct("<Qqqq")
_SLOT_SIZE = _SLOT.size
_LOCK_INIT = 0  # byte range locked while a process checks or writes the header
_LOCK_BASE = 1  # stripe i is locked on byte _LOCK_BASE + i (record locks need no data there)

DEFAULT_STRIPES = 64
DEFAULT_SLOTS_PER_STRIPE = 2048  # 131072 slots, 4 MiB (a sparse file: pages appear as used)
DEFAULT_PROBE = 32

_private_tables: weakref.WeakSet[SharedCounterTable] = weakref.WeakSet()
_open_tables: dict[str, SharedCounterTable] = {}


def _after_fork_in_child() -> None:
    for table in _private_tables:
        table.shared = True


os.register_at_fork(after_in_child=_after_fork_in_child)


class SharedCounterTable:
    """Fixed-window counters in a memory-mapped file, exact across processes (see module docs)."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        stripes: int = DEFAULT_STRIPES,
        slots_per_stripe: int = DEFAULT_SLOTS_PER_STRIPE,
        probe: int = DEFAULT_PROBE,
    ) -> None:
        if stripes < 1 or stripes > 1 << 20 or slots_per_stripe < 1 or probe < 1:
            raise ValueError("invalid counter table geometry")
        if path is None:
            fd, name = tempfile.mkstemp(prefix="forecourt-counters-")
            os.unlink(name)
            self.path: str | None = None
            self.shared = False
            _private_tables.add(self)
        else:
            fd = os.open(os.fspath(path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self.path = os.fspath(path)
            self.shared = True
        self._fd = fd
        try:
            self.stripes, self.slots_per_stripe, self.probe, secret = self._initialise(
                stripes, slots_per_stripe, probe
            )
            size = _HEADER_SIZE + self.stripes * self.slots_per_stripe * _SLOT_SIZE
            self._map: mmap.mmap | None = mmap.mmap(
                fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE
            )
        except BaseException:
            os.close(fd)
            raise
        # Keyed with a random secret kept in the file: every worker hashes alike, but nobody can
        # craft an identifier whose counter collides with another client's.
        self._hasher = blake2b(digest_size=8, key=secret)
        self._salts: dict[str, int] = {}
        self._evictions = 0

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> SharedCounterTable:
        """The table in `path`, one instance per process (see the module docs on record locks)."""
        key = os.path.abspath(os.fspath(path))
        table = _open_tables.get(key)
        if table is None or table.closed:
            table = cls(key)
            _open_tables[key] = table
        return table

    @classmethod
    def for_state_dir(cls, state_dir: str | os.PathLike[str] | None, name: str) -> SharedCounterTable:
        """`<state_dir>/counters/<name>.table`, or a private table of this process when no state dir."""
        if state_dir is None:
            table = _open_tables.get("")
            if table is None or table.closed:
                table = cls()
                _open_tables[""] = table
            return table
        directory = Path(state_dir) / "counters"
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "default"
        return cls.open(directory / f"{safe}.table")

    def _initialise(self, stripes: int, slots_per_stripe: int, probe: int) -> tuple[int, int, int, bytes]:
        """Check the header under the init lock; (re)create the file when it is not a table of ours."""
        fd = self._fd
        fcntl.lockf(fd, fcntl.LOCK_EX, 1, _LOCK_INIT)
        try:
            head = os.pread(fd, _HEADER.size, 0)
            if len(head) == _HEADER.size:
                magic, version, f_stripes, f_slots, f_probe, secret = _HEADER.unpack(head)
                expected = _HEADER_SIZE + f_stripes * f_slots * _SLOT_SIZE
                if (
                    magic == _MAGIC
                    and version == _VERSION
                    and os.fstat(fd).st_size == expected
                    and f_stripes
                    and f_slots
                    and f_probe
                ):
                    return f_stripes, f_slots, f_probe, secret
            secret = os.urandom(16)
            os.ftruncate(fd, 0)
            os.ftruncate(fd, _HEADER_SIZE + stripes * slots_per_stripe * _SLOT_SIZE)
            os.pwrite(fd, _HEADER.pack(_MAGIC, _VERSION, stripes, slots_per_stripe, probe, secret), 0)
            return stripes, slots_per_stripe, probe, secret
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN, 1, _LOCK_INIT)

    @property
    def closed(self) -> bool:
        return self._map is None

    # ------------------------------------------------------------------ the one operation
    def take(self, key: str, windows: Sequence[Window], amount: int = 1) -> Usage:
        """Count `amount` for `key` in every window unless one would go over its limit (atomic)."""
        mm = self._map
        if mm is None:
            raise StoreError("the counter table is closed")
        hasher = self._hasher.copy()
        hasher.update(key.encode())
        digest = int.from_bytes(hasher.digest(), "little")
        slots = self.slots_per_stripe
        stripe = (digest >> 32) % self.stripes
        base = _HEADER_SIZE + stripe * slots * _SLOT_SIZE
        salts = self._salts
        unpack = _SLOT.unpack_from
        shared = self.shared
        if shared:
            fcntl.lockf(self._fd, fcntl.LOCK_EX, 1, _LOCK_BASE + stripe)
        try:
            if len(windows) == 1:  # the common case, without the lists
                window = windows[0]
                salt = salts.get(window.period)
                if salt is None:
                    salt = self._salt(window.period)
                slot_key = digest ^ salt or 1
                offset = base + (slot_key & 0xFFFFFFFF) % slots * _SLOT_SIZE
                k, start, end, count = unpack(mm, offset)
                if k != slot_key:
                    offset, start, end, count = self._find(mm, base, slot_key, window, int(time.time()))
                if start < window.start:
                    start, end, count = window.start, window.end, 0
                if count + amount > window.limit:
                    return Usage(False, (count,))
                _SLOT.pack_into(mm, offset, slot_key, start, end, count + amount)
                return Usage(True, (count + amount,))
            now = 0
            allowed = True
            found = []  # (offset, slot key, window start, window end, count) per window
            for window in windows:
                salt = salts.get(window.period)
                if salt is None:
                    salt = self._salt(window.period)
                slot_key = digest ^ salt or 1
                offset = base + (slot_key & 0xFFFFFFFF) % slots * _SLOT_SIZE
                k, start, end, count = unpack(mm, offset)
                if k != slot_key:  # not in its home slot: probe (and claim a slot if need be)
                    now = now or int(time.time())
                    offset, start, end, count = self._find(mm, base, slot_key, window, now)
                if start < window.start:  # the slot holds an older window of this counter
                    start, end, count = window.start, window.end, 0
                if count + amount > window.limit:
                    allowed = False
                found.append((offset, slot_key, start, end, count))
            if not allowed:
                return Usage(False, tuple([entry[4] for entry in found]))
            pack = _SLOT.pack_into
            for offset, slot_key, start, end, count in found:
                pack(mm, offset, slot_key, start, end, count + amount)
            return Usage(True, tuple([entry[4] + amount for entry in found]))
        finally:
            if shared:
                fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, _LOCK_BASE + stripe)

    def _salt(self, period: str) -> int:
        salt = int.from_bytes(blake2b(period.encode(), digest_size=8).digest(), "little")
        self._salts[period] = salt
        return salt

    def _find(
        self, mm: mmap.mmap, base: int, slot_key: int, window: Window, now: int
    ) -> tuple[int, int, int, int]:
        """The slot of `slot_key` in the stripe at `base`: (offset, start, end, count), claimed if new.

        Called with the stripe locked. A claimed slot is written at once (count 0) so that a second
        window of the same take cannot claim it too.
        """
        slots = self.slots_per_stripe
        home = (slot_key & 0xFFFFFFFF) % slots
        unpack = _SLOT.unpack_from
        free = -1
        oldest = -1
        oldest_end = 0
        for step in range(self.probe if self.probe < slots else slots):
            offset = base + ((home + step) % slots) * _SLOT_SIZE
            k, start, end, count = unpack(mm, offset)
            if k == slot_key:
                return offset, start, end, count
            if k == 0:
                if free < 0:
                    free = offset
                break
            if free < 0:
                if end <= now:
                    free = offset
                elif oldest < 0 or end < oldest_end:
                    oldest, oldest_end = offset, end
        if free < 0:
            free = oldest
            self._evictions += 1
            if self._evictions & (self._evictions - 1) == 0:  # log the 1st, 2nd, 4th, 8th, ...
                log.warning(
                    "rate-limit counter table %s is full around a key: reset a live counter (%d so far)",
                    self.path or "(private)",
                    self._evictions,
                )
        _SLOT.pack_into(mm, free, slot_key, window.start, window.end, 0)
        return free, window.start, window.end, 0

    # ------------------------------------------------------------------ housekeeping
    def live_slots(self) -> int:
        """How many slots hold a window that has not ended (for tests and metrics)."""
        mm = self._map
        if mm is None:
            return 0
        now = int(time.time())
        live = 0
        for index in range(self.stripes * self.slots_per_stripe):
            k, _, end, _ = _SLOT.unpack_from(mm, _HEADER_SIZE + index * _SLOT_SIZE)
            if k and end > now:
                live += 1
        return live

    @property
    def evictions(self) -> int:
        return self._evictions

    def release(self) -> None:
        """Unmap and close the file (only when no plugin of this process uses it any more)."""
        if self._map is not None:
            self._map.close()
            self._map = None
            os.close(self._fd)
        for key, table in list(_open_tables.items()):
            if table is self:
                del _open_tables[key]

    async def close(self) -> None:
        """Plugins share the table of their gateway for the life of the process: nothing to close."""
