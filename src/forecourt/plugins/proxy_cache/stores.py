"""Where cached responses live: the `CacheStore` protocol, `MemoryStore` and `RedisStore`.

A store maps a cache key to an `Entry`: a `CachedResponse`, or a `VaryIndex` saying "this key's
responses vary on these request headers; look under the variant key" (key.py `variant_key`).
Methods return plain values when they can answer at once (memory) and awaitables when they must
wait (Redis), so a memory hit costs the request no task.

* `MemoryStore` (`strategy: memory`): an LRU dict bounded by bytes, **per worker process**. Workers
  are forked processes and Python objects cannot be shared between them, so with `--workers N`
  each worker fills its own copy (up to N upstream requests per key) and holds up to `max_bytes`.
  Purges reach every worker through the run's purge log (purge.py). Plugins of one gateway naming
  the same `memory.dictionary_name` share one store, which survives reloads.
* `RedisStore` (`strategy: redis`): shared by every worker and every node using that Redis; keys
  are `forecourt:proxy-cache:<gateway>:<cache key>`, each with its storage TTL (`SET ... PX`).
  A Redis failure is a miss (and is logged), never an error for the client.

Errors: `StoreError` from admin operations (purge, inspect) when the backend fails.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections import OrderedDict
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from forecourt.plugins.proxy_cache.purge import ALL, PurgeLog
from forecourt.state import RedisSettings

__all__ = [
    "CACHE_VERSION",
    "CacheStore",
    "CachedResponse",
    "Entry",
    "MemoryStore",
    "RedisStore",
    "StoreError",
    "VaryIndex",
    "decode_entry",
    "encode_entry",
]

log = logging.getLogger(__name__)

CACHE_VERSION = 1
REDIS_PREFIX = "forecourt:proxy-cache:"
_ENTRY_OVERHEAD = 200  # bytes per entry besides its key, headers and body (dict slot, objects)
_ERROR_LOG_INTERVAL = 5.0


class StoreError(Exception):
    """The cache backend failed (Redis unreachable or answering nonsense)."""


@dataclass(frozen=True, slots=True)
class CachedResponse:
    """A stored response: what a hit replays, and when it stops being fresh."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    timestamp: float  # wall-clock time the response was generated (stored, minus upstream Age)
    ttl: float  # freshness lifetime, seconds
    stale_if_error: float = 0.0  # seconds past `ttl` it may answer when the upstream fails
    version: int = CACHE_VERSION

    def age(self, now: float) -> float:
        return max(now - self.timestamp, 0.0)

    def usable_on_error(self, now: float) -> bool:
        return self.stale_if_error > 0 and self.age(now) <= self.ttl + self.stale_if_error

    @property
    def size(self) -> int:
        return len(self.body) + sum(len(n) + len(v) + 16 for n, v in self.headers) + _ENTRY_OVERHEAD


@dataclass(frozen=True, slots=True)
class VaryIndex:
    """Stored under a primary key whose responses vary on request headers `names` (lower-cased)."""

    names: tuple[bytes, ...]
    timestamp: float

    @property
    def size(self) -> int:
        return sum(len(n) for n in self.names) + _ENTRY_OVERHEAD


Entry = CachedResponse | VaryIndex
Lookup = Entry | None


class CacheStore(Protocol):
    """A cache backend. Lookups may answer at once or return an awaitable."""

    kind: str

    def get(self, key: str) -> Lookup | Awaitable[Lookup]: ...

    def set(self, key: str, entry: Entry, ttl: float) -> Awaitable[None] | None: ...

    async def delete(self, key: str) -> bool:
        """Remove `key` (everywhere the store is seen from); whether it was there (here)."""
        ...

    async def purge(self) -> None:
        """Remove every entry."""
        ...

    async def inspect(self, key: str) -> Lookup:
        """The entry under `key`, for the admin API."""
        ...

    async def close(self) -> None: ...


# ---------------------------------------------------------------------- codec (Redis)
_FRAME = struct.Struct("<4sI")
_MAGIC = b"FPC1"


def encode_entry(entry: Entry) -> bytes:
    if isinstance(entry, VaryIndex):
        meta: dict[str, Any] = {
            "kind": "vary",
            "names": [n.decode("latin-1") for n in entry.names],
            "timestamp": entry.timestamp,
        }
        body = b""
    else:
        meta = {
            "kind": "response",
            "status": entry.status,
            "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in entry.headers],
            "timestamp": entry.timestamp,
            "ttl": entry.ttl,
            "stale_if_error": entry.stale_if_error,
            "version": entry.version,
        }
        body = entry.body
    head = orjson.dumps(meta)
    return _FRAME.pack(_MAGIC, len(head)) + head + body


def decode_entry(data: bytes) -> Entry:
    """The inverse of `encode_entry`; raises `ValueError` for anything else."""
    if len(data) < _FRAME.size:
        raise ValueError("truncated cache entry")
    magic, length = _FRAME.unpack_from(data, 0)
    if magic != _MAGIC:
        raise ValueError("not a Forecourt cache entry")
    try:
        meta = orjson.loads(data[_FRAME.size : _FRAME.size + length])
        if meta["kind"] == "vary":
            return VaryIndex(tuple(n.encode("latin-1") for n in meta["names"]), float(meta["timestamp"]))
        return CachedResponse(
            status=int(meta["status"]),
            headers=tuple((n.encode("latin-1"), v.encode("latin-1")) for n, v in meta["headers"]),
            body=data[_FRAME.size + length :],
            timestamp=float(meta["timestamp"]),
            ttl=float(meta["ttl"]),
            stale_if_error=float(meta.get("stale_if_error", 0.0)),
            version=int(meta.get("version", 0)),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed cache entry: {exc}") from exc


# ---------------------------------------------------------------------- memory
class MemoryStore:
    """An LRU of entries bounded by bytes, in this worker process (see the module docstring)."""

    kind = "memory"
    _shared: ClassVar[dict[tuple[str, str], MemoryStore]] = {}

    def __init__(self, max_bytes: int, purges: PurgeLog | None = None) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self._entries: OrderedDict[str, tuple[Entry, float, int]] = OrderedDict()  # entry, expiry, size
        self._purges = purges
        self._seen = purges.generation if purges is not None else 0
        self._users = 0
        self._name: tuple[str, str] | None = None
        self.evictions = 0

    # ------------------------------------------------------------------ sharing
    @classmethod
    def acquire(cls, gateway: str, name: str, max_bytes: int, purges: PurgeLog | None) -> MemoryStore:
        """The process's store `name` of `gateway`, with one more user (each calls `close` once).

        A store is resized to the `max_bytes` of the config that acquires it last (a reload).
        """
        store = cls._shared.get((gateway, name))
        if store is None:
            store = cls(max_bytes, purges)
            store._name = (gateway, name)
            cls._shared[(gateway, name)] = store
        elif store.max_bytes != max_bytes:
            store.max_bytes = max_bytes
            store._evict(0)
        store._users += 1
        return store

    @classmethod
    def of_gateway(cls, gateway: str) -> list[MemoryStore]:
        return [store for (g, _), store in cls._shared.items() if g == gateway]

    async def close(self) -> None:
        self._users -= 1
        if self._users <= 0 and self._name is not None and self._shared.get(self._name) is self:
            del self._shared[self._name]
            self.clear()

    # ------------------------------------------------------------------ lookups
    def get(self, key: str) -> Lookup:
        if self._purges is not None and self._purges.generation != self._seen:
            self._apply_purges()
        item = self._entries.get(key)
        if item is None:
            return None
        entry, expiry, size = item
        if expiry <= time.monotonic():
            del self._entries[key]
            self.used -= size
            return None
        self._entries.move_to_end(key)
        return entry

    def set(self, key: str, entry: Entry, ttl: float) -> None:
        size = entry.size + len(key)
        old = self._entries.pop(key, None)
        if old is not None:
            self.used -= old[2]
        if size > self.max_bytes or ttl <= 0:
            return
        self._evict(size)
        self._entries[key] = (entry, time.monotonic() + ttl, size)
        self.used += size

    def _evict(self, room: int) -> None:
        entries = self._entries
        now = time.monotonic()
        while entries and self.used + room > self.max_bytes:
            _, (_, expiry, size) = entries.popitem(last=False)
            self.used -= size
            if expiry > now:
                self.evictions += 1

    def remove(self, key: str) -> bool:
        """Drop `key` here only (and its variants, which share its prefix)."""
        item = self._entries.pop(key, None)
        if item is not None:
            self.used -= item[2]
        if item is None:
            return False
        if isinstance(item[0], VaryIndex):
            prefix = key + "."
            for other in [k for k in self._entries if k.startswith(prefix)]:
                self.used -= self._entries.pop(other)[2]
        return True

    def clear(self) -> None:
        self._entries.clear()
        self.used = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _apply_purges(self) -> None:
        assert self._purges is not None
        self._seen, keys = self._purges.since(self._seen)
        if keys is None:
            self.clear()
            return
        for key in keys:
            self.remove(key)

    # ------------------------------------------------------------------ admin
    async def delete(self, key: str) -> bool:
        found = self.get(key) is not None
        self.remove(key)
        if self._purges is not None:
            generation = self._purges.append(key)
            if generation == self._seen + 1:
                self._seen = generation  # applied here already; earlier ones are still to apply
        return found

    async def purge(self) -> None:
        self.clear()
        if self._purges is not None:
            self._seen = self._purges.append(ALL)

    async def inspect(self, key: str) -> Lookup:
        return self.get(key)


# ---------------------------------------------------------------------- redis
class RedisStore:
    """Entries in Redis, shared across workers and nodes (see the module docstring)."""

    kind = "redis"
    _shared: ClassVar[dict[tuple[RedisSettings, str], RedisStore]] = {}

    def __init__(self, settings: RedisSettings, gateway: str) -> None:
        self.settings = settings
        self.prefix = f"{REDIS_PREFIX}{gateway or 'default'}:"
        self._client: aioredis.Redis | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._users = 0
        self._last_error_log = 0.0

    @classmethod
    def acquire(cls, settings: RedisSettings, gateway: str) -> RedisStore:
        store = cls._shared.get((settings, gateway))
        if store is None:
            store = cls(settings, gateway)
            cls._shared[(settings, gateway)] = store
        store._users += 1
        return store

    async def close(self) -> None:
        self._users -= 1
        if self._users > 0:
            return
        key = (self.settings, self.prefix[len(REDIS_PREFIX) : -1])
        if self._shared.get(key) is self:
            del self._shared[key]
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _redis(self) -> aioredis.Redis:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._loop = loop
            self._client = _connect(self.settings)
        return self._client

    def _failed(self, what: str, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_error_log >= _ERROR_LOG_INTERVAL:
            self._last_error_log = now
            log.error("proxy-cache: redis %s: %s failed: %s", self.settings.describe(), what, exc)

    # ------------------------------------------------------------------ lookups
    def get(self, key: str) -> Awaitable[Lookup]:
        return self._get(key)

    async def _get(self, key: str) -> Lookup:
        try:
            data = await self._redis().get(self.prefix + key)
        except (RedisError, OSError) as exc:
            self._failed("lookup", exc)
            return None
        if not isinstance(data, bytes):
            return None
        try:
            return decode_entry(data)
        except ValueError as exc:
            self._failed(f"decoding {key}", exc)
            return None

    def set(self, key: str, entry: Entry, ttl: float) -> Awaitable[None]:
        return self._set(key, entry, ttl)

    async def _set(self, key: str, entry: Entry, ttl: float) -> None:
        millis = int(ttl * 1000)
        if millis <= 0:
            return
        try:
            await self._redis().set(self.prefix + key, encode_entry(entry), px=millis)
        except (RedisError, OSError) as exc:
            self._failed("store", exc)

    # ------------------------------------------------------------------ admin
    async def delete(self, key: str) -> bool:
        client = self._redis()
        try:
            removed = int(await client.delete(self.prefix + key))
            variants = [
                k async for k in client.scan_iter(match=_glob(self.prefix + key + ".") + "*", count=500)
            ]
            if variants:
                await client.unlink(*variants)
        except (RedisError, OSError) as exc:
            raise StoreError(f"redis {self.settings.describe()}: {exc}") from exc
        return removed > 0

    async def purge(self) -> None:
        client = self._redis()
        try:
            batch: list[bytes] = []
            async for name in client.scan_iter(match=_glob(self.prefix) + "*", count=1000):
                batch.append(name)
                if len(batch) >= 1000:
                    await client.unlink(*batch)
                    batch = []
            if batch:
                await client.unlink(*batch)
        except (RedisError, OSError) as exc:
            raise StoreError(f"redis {self.settings.describe()}: {exc}") from exc

    async def inspect(self, key: str) -> Lookup:
        try:
            data = await self._redis().get(self.prefix + key)
        except (RedisError, OSError) as exc:
            raise StoreError(f"redis {self.settings.describe()}: {exc}") from exc
        if not isinstance(data, bytes):
            return None
        try:
            return decode_entry(data)
        except ValueError:
            return None


def _glob(text: str) -> str:
    """`text` with Redis glob metacharacters escaped."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _connect(s: RedisSettings) -> aioredis.Redis:
    options: dict[str, Any] = {
        "socket_timeout": s.timeout,
        "socket_connect_timeout": s.timeout,
        "retry": Retry(NoBackoff(), 1),
        "health_check_interval": 0,
    }
    if s.url is not None:
        return aioredis.Redis.from_url(s.url, **options)
    tls: dict[str, Any] = {}
    if s.ssl:
        tls = {
            "ssl": True,
            "ssl_cert_reqs": "required" if s.ssl_verify else "none",
            "ssl_check_hostname": bool(s.ssl_verify),
        }
    return aioredis.Redis(
        host=s.host or "127.0.0.1",
        port=s.port,
        db=s.database,
        username=s.username,
        password=s.password,
        **tls,
        **options,
    )
