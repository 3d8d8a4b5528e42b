"""Counters in Redis, exact across gateway nodes: one atomic script per batch of takes.

Every take is a check-and-count done inside a Lua script, so two nodes can never both grant the
last hit of a window (a GET followed by an INCRBY from the client would race). The script reads
every window of a take, and only when none would go over its limit runs INCRBY on each (with an
EXPIRE at the end of the window when the counter is new). Keys are
`<prefix>{<counter key>}:<period>:<window start>`; the braces make them one Redis Cluster hash slot.

Throughput. Requests must not queue behind one another on Redis round trips, and one command per
request costs redis-py more CPU than the request itself. So takes are batched: every take made in
one event-loop iteration is queued, and a callback scheduled with `call_soon` sends the queue as
ONE `EVALSHA` whose script processes the takes in order (each still atomic on its own). Up to
`max_inflight` batches are in flight at once, each on its own pooled connection; while they are,
new takes queue up and leave together with the next batch, so batches grow with load instead of
round trips serialising requests.

Failures. A refused connection, a reset or a timeout raises `StoreUnavailable` to every take of the
batch (the caller applies `fault_tolerant`); nothing is retried later. The pool reconnects on the
next batch, so Redis coming back needs no restart; a stale pooled connection (Redis restarted) is
retried once at once. `NOSCRIPT` (a restarted or flushed Redis) is answered by sending the script
itself with `EVAL`, which caches it again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from forecourt.state.counters import StoreError, StoreUnavailable, Usage, Window

log = logging.getLogger(__name__)

KEY_PREFIX = "forecourt:ratelimit:"

# ARGV, per take: window count n, amount, then n x (limit, ttl seconds); KEYS: n keys per take.
# Reply: one string "allowed,count,...,allowed,count,..." (per take 1/0 then its n counts); one
# bulk string is far cheaper for the client to read than an array of integers.
TAKE_SCRIPT = """
local out = {}
local k = 1
local a = 1
local nargs = #ARGV
while a <= nargs do
  local n = tonumber(ARGV[a])
  local amount = tonumber(ARGV[a + 1])
  a = a + 2
  local counts = {}
  local ok = 1
  for i = 0, n - 1 do
    local c = tonumber(redis.call('GET', KEYS[k + i]) or '0')
    counts[i + 1] = c
    if c + amount > tonumber(ARGV[a + 2 * i]) then ok = 0 end
  end
  if ok == 1 then
    for i = 0, n - 1 do
      local c = redis.call('INCRBY', KEYS[k + i], amount)
      if c == amount then redis.call('EXPIRE', KEYS[k + i], ARGV[a + 2 * i + 1]) end
      counts[i + 1] = c
    end
  end
  out[#out + 1] = ok
  for i = 1, n do out[#out + 1] = counts[i] end
  k = k + n
  a = a + 2 * n
end
return table.concat(out, ',')
"""
TAKE_SHA = hashlib.sha1(TAKE_SCRIPT.encode()).hexdigest()
_EVALSHA = b"*%%d\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n" % TAKE_SHA.encode()
_EVAL = b"*%%d\r\n$4\r\nEVAL\r\n$%d\r\n%s\r\n" % (len(TAKE_SCRIPT.encode()), TAKE_SCRIPT.encode())

_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)


def _bulk_int(value: int) -> bytes:
    """`value` as a RESP bulk string."""
    digits = b"%d" % value
    return b"$%d\r\n%b\r\n" % (len(digits), digits)


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """How to reach Redis (Kong's `config.redis` record, or a `redis://` URL from `--redis`)."""

    host: str | None = None
    port: int = 6379
    database: int = 0
    username: str | None = None
    password: str | None = None
    ssl: bool = False
    ssl_verify: bool = False
    server_name: str | None = None
    timeout: float = 2.0  # seconds, for connecting and for each reply
    url: str | None = None

    def describe(self) -> str:
        if self.url is not None:
            return self.url.split("@")[-1]
        return f"{self.host}:{self.port}/{self.database}"

    @classmethod
    def from_plugin(cls, redis: Any, fallback_url: str | None, needed_by: str) -> RedisSettings:
        """Settings from a plugin's Kong-style `config.redis` record, else the gateway's `--redis`.

        `needed_by` names what requires Redis (e.g. "policy 'redis'") for the error message.
        """
        if redis.server_name is not None and redis.server_name != redis.host:
            raise ValueError(
                "config.redis.server_name: a TLS server name other than the host is not supported"
            )
        timeout = max(redis.timeout, 1) / 1000
        if redis.host is not None:
            return cls(
                host=redis.host,
                port=redis.port,
                database=redis.database,
                username=redis.username,
                password=redis.password,
                ssl=redis.ssl,
                ssl_verify=redis.ssl_verify,
                timeout=timeout,
            )
        if fallback_url:
            return cls(url=fallback_url, timeout=timeout)
        raise ValueError(f"{needed_by} needs config.redis.host (or a gateway started with --redis URL)")


_Take = tuple[str, Sequence[Window], int, "asyncio.Future[Usage]"]


class RedisCounters:
    """A `CounterStore` in Redis; shared by every plugin instance of a process with equal settings."""

    _shared: dict[RedisSettings, RedisCounters] = {}

    def __init__(
        self,
        settings: RedisSettings,
        *,
        max_batch: int = 256,
        max_inflight: int = 4,
        prefix: str = KEY_PREFIX,
    ) -> None:
        self.settings = settings
        self.prefix = prefix
        self.max_batch = max_batch
        self.max_inflight = max_inflight
        self._client: aioredis.Redis | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[_Take] = []
        self._flush: asyncio.Handle | None = None
        self._inflight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._users = 0
        self.batches = 0  # batches sent (for tests and metrics)

    # ------------------------------------------------------------------ sharing
    @classmethod
    def acquire(cls, settings: RedisSettings) -> RedisCounters:
        """The process's store for `settings`, with one more user (each user calls `close` once)."""
        store = cls._shared.get(settings)
        if store is None:
            store = cls(settings)
            cls._shared[settings] = store
        store._users += 1
        return store

    async def close(self) -> None:
        """Drop one user; the last one closes the connections."""
        self._users -= 1
        if self._users > 0:
            return
        if self._shared.get(self.settings) is self:
            del self._shared[self.settings]
        await self.aclose()

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    # ------------------------------------------------------------------ taking
    def take(self, key: str, windows: Sequence[Window], amount: int = 1) -> asyncio.Future[Usage]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._bind(loop)
        future: asyncio.Future[Usage] = loop.create_future()
        self._pending.append((key, windows, amount, future))
        if self._flush is None and self._inflight < self.max_inflight:
            self._flush = loop.call_soon(self._send_pending)
        return future

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """First use on `loop` (a store outliving a test's event loop starts afresh)."""
        self._loop = loop
        self._client = None
        self._pending = []
        self._flush = None
        self._inflight = 0
        self._tasks = set()

    def _send_pending(self) -> None:
        self._flush = None
        loop = self._loop
        assert loop is not None
        while self._pending and self._inflight < self.max_inflight:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            self._inflight += 1
            task = loop.create_task(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._inflight -= 1
        if self._pending and self._flush is None and self._loop is not None:
            self._flush = self._loop.call_soon(self._send_pending)

    async def _send(self, batch: list[_Take]) -> None:
        """One EVALSHA for the whole batch, packed here (RESP) rather than by redis-py per argument."""
        self.batches += 1
        keys: list[bytes] = []
        args: list[bytes] = []
        now = int(time.time())
        prefix = self.prefix
        for key, windows, amount, _ in batch:
            args.append(_bulk_int(len(windows)))
            args.append(_bulk_int(amount))
            for window in windows:
                name = f"{prefix}{{{key}}}:{window.period}:{window.start}".encode()
                keys.append(b"$%d\r\n%b\r\n" % (len(name), name))
                args.append(_bulk_int(window.limit))
                args.append(_bulk_int(max(window.end - now, 0) + 1))
        body = b"".join([_bulk_int(len(keys)), *keys, *args])
        count = 3 + len(keys) + len(args)  # EVALSHA sha numkeys keys... args...
        try:
            reply = await self._evaluate(count, body)
            fields = reply.split(b",")
            index = 0
            for _, windows, _, future in batch:
                n = len(windows)
                usage = Usage(
                    fields[index] == b"1", tuple([int(c) for c in fields[index + 1 : index + 1 + n]])
                )
                index += 1 + n
                if not future.done():
                    future.set_result(usage)
        except StoreError as exc:
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
        except (ValueError, IndexError) as exc:
            error = StoreError(f"redis {self.settings.describe()}: unexpected script reply: {exc}")
            for *_, future in batch:
                if not future.done():
                    future.set_exception(error)
        except BaseException as exc:  # cancelled while closing: fail the takes, do not hang them
            aborted = StoreUnavailable(f"redis counter batch aborted: {exc!r}")
            for *_, future in batch:
                if not future.done():
                    future.set_exception(aborted)
            raise

    async def _evaluate(self, count: int, body: bytes) -> bytes:
        """Send the batch on a pooled connection; on NOSCRIPT send the script itself (EVAL)."""
        client = self._client or self._connect()
        pool = client.connection_pool
        try:
            try:
                return await self._request(pool, (_EVALSHA % count) + body)
            except NoScriptError:
                return await self._request(pool, (_EVAL % count) + body)
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"redis {self.settings.describe()} unavailable: {exc}") from exc
        except RedisError as exc:
            raise StoreError(f"redis {self.settings.describe()} failed: {exc}") from exc

    async def _request(self, pool: aioredis.ConnectionPool, payload: bytes) -> bytes:
        # A connection that was open before may have been closed by a Redis restart: its failure
        # is retried once on a fresh one. A fresh connection's failure (Redis down) is final, and
        # so is a timeout (the script may have run: no double count).
        acquire: Callable[[], Awaitable[AbstractConnection]] = pool.get_connection
        for attempt in (1, 2):
            connection = await acquire()
            reused = connection.is_connected
            try:
                await connection.send_packed_command(payload, check_health=False)
                reply = await connection.read_response()
            except RedisConnectionError:
                if attempt == 1 and reused:
                    continue
                raise
            finally:
                await pool.release(connection)
            if not isinstance(reply, bytes):
                raise StoreError(f"redis {self.settings.describe()}: unexpected script reply {reply!r}")
            return reply
        raise AssertionError("unreachable")  # pragma: no cover

    def _connect(self) -> aioredis.Redis:
        s = self.settings
        options: dict[str, Any] = {
            "socket_timeout": s.timeout,
            "socket_connect_timeout": s.timeout,
            "retry": Retry(NoBackoff(), 0),
            "health_check_interval": 0,
        }
        if s.url is not None:
            client = aioredis.Redis.from_url(s.url, **options)
        else:
            tls: dict[str, Any] = {}
            if s.ssl:
                tls = {
                    "ssl": True,
                    "ssl_cert_reqs": "required" if s.ssl_verify else "none",
                    "ssl_check_hostname": bool(s.ssl_verify),
                }
            client = aioredis.Redis(
                host=s.host or "127.0.0.1",
                port=s.port,
                db=s.database,
                username=s.username,
                password=s.password,
                **tls,
                **options,
            )
        self._client = client
        return client
