"""Node-local counters shared by every worker process of a run: a hash table in a mapped file.

Workers are forked processes, so a dict per process would let each worker grant the full limit. The
counters live instead in one file in the run's state directory, mapped with `mmap(MAP_SHARED)` by
every worker; a write by one is seen by all at once, without a server or a round trip.

Layout (little endian):

    header   64 bytes: magic, layout version, stripes, slots per stripe, probe length, lock kind,
             hash key
    locks    stripes x 64 bytes: one process-shared lock per stripe (see Concurrency)
    slots    stripes x slots_per_stripe x 32 bytes: (key hash u64, window start i64,
             window end i64, count i64); a key hash of 0 marks a never-used slot

A counter is identified by the 64-bit BLAKE2b hash of its key salted with the period, not by the
window: the slot of `(key, minute)` is reused for every minute, and a take that finds an older
window in it starts again from 0. So a steady client costs one slot per period, and windows never
pile up.

Concurrency. The table is split into stripes; all periods of one key hash into the same stripe, so
one take (check every window, then count them all) runs under one lock. On Linux the lock is a
robust, process-shared pthread mutex kept in the file: taking and releasing a free one is an
atomic instruction each, with no system call (a record lock costs two `fcntl` calls per take, the
most expensive part of it), and it stays crash-safe: when a worker dies holding it, the kernel
marks it and the next taker recovers it (`EOWNERDEAD`; the dead worker's take is either written or
not, a slot being one write). Where robust mutexes are missing the lock is a POSIX record lock
(`fcntl.lockf`) on one byte per stripe, which the kernel also releases when its owner dies. The
kind is chosen by whoever creates the file and recorded in it, so processes never mix the two.
Record locks belong to the process, and closing any descriptor of the file drops them: hence one
`SharedCounterTable` per file per process (`open()` caches it). Without a state directory the
table is a private, unlinked temporary file and takes no lock until the process forks (a fork
marks every private table shared).

Reclamation. Linear probing stays within a stripe and looks at most `probe` slots. A slot whose
window has ended is free for any key; lookups only stop at a never-used slot, so a key is always
found where it was put. When all probed slots hold live windows (a table sized far too small for
its key set), the slot whose window ends first is taken over, which resets that counter — the
same trade Kong's LRU-evicting shared dict makes; it is logged.

Cost: a dict lookup (a key's hash is remembered), the lock, and a struct read/write per period.
The common case (one period, the key in its home slot, the lock free) runs in C
(`_slot_take.c`, built with the compiled modules): ~0.45 µs per take against ~1.2 µs for this
module's Python path, which does everything else and is the whole table in pure-Python mode
(`tests/state/test_shared_table.py` measures both).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import mmap
import os
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from hashlib import blake2b
from pathlib import Path
from typing import Any, Final

from forecourt.state.counters import StoreError, Usage, Window

log = logging.getLogger(__name__)

_MAGIC = b"FCCOUNT1"
# magic, version, stripes, slots per stripe, probe, lock kind, hash key
_HEADER = struct.Struct("<8sIIIII16s")
_VERSION = 2
_HEADER_SIZE = 64
_SLOT = struct.Struct("<Qqqq")
_SLOT_SIZE = _SLOT.size
_LOCK_SIZE = 64  # room for a pthread_mutex_t (40 or 48 bytes), one cache line per stripe
_LOCK_INIT = 0  # byte range locked while a process checks or writes the header
_LOCK_BASE = 1  # with record locks, stripe i is locked on byte _LOCK_BASE + i

_RECORD_LOCKS = 1
_ROBUST_MUTEXES = 2

DEFAULT_STRIPES = 64
DEFAULT_SLOTS_PER_STRIPE = 2048  # 131072 slots, 4 MiB (a sparse file: pages appear as used)
DEFAULT_PROBE = 32
_PLACES_CACHED = 8192

# `Usage` without the named tuple's Python-level `__new__` (one is made per take).
_usage = tuple.__new__


class _Pthread:
    """The robust process-shared mutexes of the C library, when it has them (Linux)."""

    def __init__(self) -> None:
        # PyDLL keeps the GIL: right for calls that never block. A contended lock waits through
        # the CDLL function, which lets the process's other threads run meanwhile.
        quick, blocking = ctypes.PyDLL(None), ctypes.CDLL(None)
        self.trylock: Callable[[Any], int] = quick.pthread_mutex_trylock
        self.unlock: Callable[[Any], int] = quick.pthread_mutex_unlock
        self.lock: Callable[[Any], int] = blocking.pthread_mutex_lock
        self.consistent: Callable[[Any], int] = quick.pthread_mutex_consistent
        self._init = quick.pthread_mutex_init
        attr = ctypes.create_string_buffer(64)  # pthread_mutexattr_t is 4 bytes on glibc and musl
        if (
            quick.pthread_mutexattr_init(attr)
            or quick.pthread_mutexattr_setpshared(attr, 1)  # PTHREAD_PROCESS_SHARED
            or quick.pthread_mutexattr_setrobust(attr, 1)  # PTHREAD_MUTEX_ROBUST
        ):
            raise OSError("cannot make robust process-shared mutex attributes")
        self._attr = attr

    def initialise(self, address: int) -> None:
        if self._init(ctypes.c_void_p(address), self._attr):
            raise OSError("pthread_mutex_init failed")


def _load_pthread() -> _Pthread | None:
    if sys.platform != "linux":
        return None
    try:
        return _Pthread()
    except (OSError, AttributeError):
        return None


_PTHREAD = _load_pthread()
_DEFAULT_LOCKS = _ROBUST_MUTEXES if _PTHREAD is not None else _RECORD_LOCKS


def _load_take_home() -> Callable[[int, int, int, int, int, int, int], int] | None:
    """The C fast path (`_slot_take.c`), when it is built and current (see `forecourt._native`)."""
    try:
        from forecourt.state._slot_take import take_home
    except ImportError:
        return None
    return take_home


_TAKE_HOME = _load_take_home()
# take_home's answers that are not counts (values of `_slot_take.c`, checked by the tests).
_UNDECIDED: Final = -(1 << 61)
_RECOVERED: Final = _UNDECIDED - 1


def _map_file(fd: int, size: int) -> mmap.mmap:
    return mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)


def _address(area: mmap.mmap) -> int:
    """Where `area` is mapped (the ctypes view is dropped at once, so the map can still close)."""
    return ctypes.addressof(ctypes.c_char.from_buffer(area))


_open_tables: dict[str, SharedCounterTable] = {}


class _ForkCount:
    """How many times this process's line has forked: a private table made before the latest
    fork is shared with the parent (and any sibling) since, and must take its locks."""

    def __init__(self) -> None:
        self.forks = 0

    def forked(self) -> None:
        self.forks += 1


_FORK_COUNT: Final = _ForkCount()
os.register_at_fork(after_in_child=_FORK_COUNT.forked)


class _Place:
    """Where a key's counters live: its hash, stripe, the stripe's slots and lock, and per period
    the slot key and home slot address (what the C fast path is given)."""

    def __init__(self, digest: int, stripe: int, base: int, lock_address: int) -> None:
        self.digest = digest
        self.stripe = stripe
        self.base = base
        self.lock_address = lock_address
        self.homes: dict[str, tuple[int, int]] = {}


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
            # Private until the process forks (see `shared`).
            self._private_since: int = _FORK_COUNT.forks
        else:
            fd = os.open(os.fspath(path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self.path = os.fspath(path)
            self._private_since = -1
        self._fd = fd
        try:
            self.stripes, self.slots_per_stripe, self.probe, locks, secret, table_map = self._initialise(
                stripes, slots_per_stripe, probe
            )
            self._slots_base = _HEADER_SIZE + self.stripes * _LOCK_SIZE
            self._map: mmap.mmap | None = table_map
        except BaseException:
            os.close(fd)
            raise
        self._map_address = _address(table_map)
        self._mutexes = locks == _ROBUST_MUTEXES
        self._try_lock: Callable[[Any], int]
        self._unlock: Callable[[Any], int]
        if self._mutexes:
            assert _PTHREAD is not None
            start = self._map_address + _HEADER_SIZE
            self._locks: tuple[Any, ...] = tuple(
                ctypes.c_void_p(start + stripe * _LOCK_SIZE) for stripe in range(self.stripes)
            )
            self._try_lock, self._unlock = _PTHREAD.trylock, _PTHREAD.unlock
        else:
            self._locks = tuple(range(_LOCK_BASE, _LOCK_BASE + self.stripes))
            self._try_lock, self._unlock = self._lock_record, self._unlock_record
        # Keyed with a random secret kept in the file: every worker hashes alike, but nobody can
        # craft an identifier whose counter collides with another client's.
        self._hasher = blake2b(digest_size=8, key=secret)
        self._salts: dict[str, int] = {}
        self._places: dict[str, _Place] = {}
        self._take_home: Callable[[int, int, int, int, int, int, int], int] | None = _TAKE_HOME
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

    def _initialise(
        self, stripes: int, slots_per_stripe: int, probe: int
    ) -> tuple[int, int, int, int, bytes, mmap.mmap]:
        """Check the header under the init lock; (re)create the file when it is not a table of ours.
        Returns the geometry, lock kind, hash secret and the table's mapping.

        The mapping is made while the init lock is held, and nothing is closed before it is
        released: `mmap` works on a duplicate of the descriptor, and closing any descriptor of the
        file drops this process's record locks, the init lock included. (A temporary mapping
        closed here once let a second worker in mid-creation: it found no header yet, made the
        file again with another secret, and the two workers counted apart.)
        """
        fd = self._fd
        fcntl.lockf(fd, fcntl.LOCK_EX, 1, _LOCK_INIT)
        try:
            head = os.pread(fd, _HEADER.size, 0)
            if len(head) == _HEADER.size:
                magic, version, f_stripes, f_slots, f_probe, locks, secret = _HEADER.unpack(head)
                expected = _HEADER_SIZE + f_stripes * (_LOCK_SIZE + f_slots * _SLOT_SIZE)
                if (
                    magic == _MAGIC
                    and version == _VERSION
                    and os.fstat(fd).st_size == expected
                    and f_stripes
                    and f_slots
                    and f_probe
                ):
                    if locks == _ROBUST_MUTEXES and _PTHREAD is None:
                        raise StoreError("the counter table uses robust mutexes, which this process lacks")
                    if locks in (_RECORD_LOCKS, _ROBUST_MUTEXES):
                        return f_stripes, f_slots, f_probe, locks, secret, _map_file(fd, expected)
            secret = os.urandom(16)
            locks = _DEFAULT_LOCKS
            size = _HEADER_SIZE + stripes * (_LOCK_SIZE + slots_per_stripe * _SLOT_SIZE)
            os.ftruncate(fd, 0)
            os.ftruncate(fd, size)
            table_map = _map_file(fd, size)
            if _PTHREAD is not None:
                start = _address(table_map) + _HEADER_SIZE
                for stripe in range(stripes):
                    _PTHREAD.initialise(start + stripe * _LOCK_SIZE)
            # The header last: a file with our magic always has its locks ready.
            os.pwrite(fd, _HEADER.pack(_MAGIC, _VERSION, stripes, slots_per_stripe, probe, locks, secret), 0)
            return stripes, slots_per_stripe, probe, locks, secret, table_map
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN, 1, _LOCK_INIT)

    def _lock_record(self, byte: int) -> int:
        fcntl.lockf(self._fd, fcntl.LOCK_EX, 1, byte)
        return 0

    def _unlock_record(self, byte: int) -> int:
        fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, byte)
        return 0

    def _wait_lock(self, lock: Any, status: int) -> None:
        """The slow path of taking a stripe's mutex: busy, or its last owner died holding it."""
        assert _PTHREAD is not None
        if status == errno.EBUSY:
            status = _PTHREAD.lock(lock)
        if status == errno.EOWNERDEAD:
            # The dead owner's take was written or not (one slot write each): the data is sound.
            _PTHREAD.consistent(lock)
            log.warning("rate-limit counter table %s: recovered the lock of a dead worker", self.path)
            return
        if status:
            raise StoreError(f"cannot lock the counter table: {os.strerror(status)}")

    @property
    def shared(self) -> bool:
        """Whether other processes may use the table (so a take must lock its stripe)."""
        return self._private_since != _FORK_COUNT.forks

    @property
    def closed(self) -> bool:
        return self._map is None

    # ------------------------------------------------------------------ the one operation
    def take(self, key: str, windows: Sequence[Window], amount: int = 1) -> Usage:
        """Count `amount` for `key` in every window unless one would go over its limit (atomic)."""
        if self._map is None:
            raise StoreError("the counter table is closed")
        place = self._places.get(key)
        if place is None:
            place = self._place(key)
        shared = self._private_since != _FORK_COUNT.forks
        take_home = self._take_home
        if take_home is not None and len(windows) == 1 and (self._mutexes or not shared):
            # The common case in C (`_slot_take.c`): one window, the key in its home slot.
            window = windows[0]
            home = place.homes.get(window.period)
            if home is None:
                home = self._home(place, window.period)
            result = take_home(
                place.lock_address if shared else 0,
                home[1],
                home[0],
                window.start,
                window.end,
                window.limit,
                amount,
            )
            if result >= 0:
                return _usage(Usage, (True, (result,)))
            if result > _UNDECIDED:
                return _usage(Usage, (False, (-1 - result,)))
            if result == _RECOVERED:
                log.warning("rate-limit counter table %s: recovered the lock of a dead worker", self.path)
        return self._take_locked(place, windows, amount, shared)

    def _take_locked(self, place: _Place, windows: Sequence[Window], amount: int, shared: bool) -> Usage:
        """`take` in Python: any number of windows, probing and claiming slots (see module docs)."""
        mm = self._map
        if mm is None:
            raise StoreError("the counter table is closed")
        base = place.base
        homes = place.homes
        map_address = self._map_address
        unpack = _SLOT.unpack_from
        if shared:
            lock = self._locks[place.stripe]
            status = self._try_lock(lock)
            if status:
                self._wait_lock(lock, status)
        try:
            now = 0
            allowed = True
            found = []  # (offset, slot key, window start, window end, count) per window
            for window in windows:
                home = homes.get(window.period)
                if home is None:
                    home = self._home(place, window.period)
                slot_key = home[0]
                offset = home[1] - map_address
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
                self._unlock(lock)

    def _place(self, key: str) -> _Place:
        """`key`'s hash, stripe and stripe offset, remembered: hashing costs more than the take."""
        hasher = self._hasher.copy()
        hasher.update(key.encode())
        digest = int.from_bytes(hasher.digest(), "little")
        stripe = (digest >> 32) % self.stripes
        base = self._slots_base + stripe * self.slots_per_stripe * _SLOT_SIZE
        lock_address = int(self._locks[stripe].value) if self._mutexes else 0  # the mutex's address
        place = _Place(digest, stripe, base, lock_address)
        places = self._places
        if len(places) >= _PLACES_CACHED:
            places.clear()  # many distinct clients: rehashing some of them is cheap enough
        places[key] = place
        return place

    def _home(self, place: _Place, period: str) -> tuple[int, int]:
        """The slot key of `place`'s counter for `period` and the address of its home slot
        (remembered in `place.homes`; both take paths start there)."""
        salt = self._salts.get(period)
        if salt is None:
            salt = self._salt(period)
        slot_key = place.digest ^ salt or 1
        offset = place.base + (slot_key & 0xFFFFFFFF) % self.slots_per_stripe * _SLOT_SIZE
        home = place.homes[period] = (slot_key, self._map_address + offset)
        return home

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
            k, _, end, _ = _SLOT.unpack_from(mm, self._slots_base + index * _SLOT_SIZE)
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
