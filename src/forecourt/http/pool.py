"""Keep-alive connection pools, one per upstream target (`ip:port`).

Acquiring an idle connection is synchronous, so a warm pool costs the hot path no task and no
await. A new connection is opened by a task; if the exchange that asked for it has gone away by
the time it is ready, the connection goes to the idle list instead of leaking, which makes
acquisition safe under cancellation. `max_connections` bounds connections per target; exchanges
beyond it wait in FIFO order and are handed a connection as soon as one is released.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from forecourt.http.upstream import UpstreamConnection

if TYPE_CHECKING:
    from forecourt.http.upstream_user import UpstreamUser


@dataclass(frozen=True, slots=True)
class PoolLimits:
    """Per-target pool limits (Kong: upstream_keepalive_pool_size / _idle_timeout / _max_requests)."""

    max_idle: int = 512
    max_connections: int = 10_000
    idle_timeout: float = 60.0
    max_requests: int = 100_000


class ConnectionPool:
    """All upstream connections of one worker."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limits: PoolLimits | None = None) -> None:
        self.loop = loop
        self.clock: Callable[[], float] = loop.time  # bound once (see GatewayRuntime.clock)
        self.limits = limits or PoolLimits()
        self.idle: dict[str, list[UpstreamConnection]] = {}
        self.open: dict[str, int] = {}
        self.waiters: dict[str, deque[UpstreamUser]] = {}
        self.all: set[UpstreamConnection] = set()
        self._tasks: set[asyncio.Task[UpstreamConnection]] = set()

    def take_idle(self, key: str) -> UpstreamConnection | None:
        """A warm connection to `key`, or None."""
        idle = self.idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                conn.deadline = 0.0
                return conn
        return None

    def release(self, conn: UpstreamConnection) -> None:
        """Return a connection whose last response was complete and keep-alive."""
        conn.exchange = None
        if conn.closed:
            return
        # The last response may have ended while a slow client had paused this connection's
        # reading; nobody would resume it once it is idle, and the next request would hang.
        conn.resume_reading()
        waiters = self.waiters.get(conn.key)
        while waiters:
            exchange = waiters.popleft()
            if not exchange.finished:
                exchange.attach(conn)
                return
        if conn.requests >= self.limits.max_requests:
            conn.close()
            return
        idle = self.idle.setdefault(conn.key, [])
        if len(idle) >= self.limits.max_idle:
            idle.pop(0).close()
        conn.deadline = self.clock() + self.limits.idle_timeout
        idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        """A connection closed: drop it from every list and let a waiter open a new one."""
        if conn not in self.all:
            return
        self.all.discard(conn)
        key = conn.key
        self.open[key] = self.open.get(key, 1) - 1
        idle = self.idle.get(key)
        if idle and conn in idle:
            idle.remove(conn)
        waiters = self.waiters.get(key)
        while waiters:
            exchange = waiters.popleft()
            if not exchange.finished:
                exchange.start_connect()
                break

    def connect(
        self,
        exchange: UpstreamUser,
        key: str,
        host: str,
        port: int,
        timeout: float,
        ssl_context: ssl.SSLContext | None,
        server_hostname: str | None,
        on_ready: Callable[[UpstreamConnection], None],
        on_error: Callable[[BaseException], None],
    ) -> None:
        """Open a new connection for `exchange`, or queue it when the target is at its limit."""
        if self.open.get(key, 0) >= self.limits.max_connections:
            self.waiters.setdefault(key, deque()).append(exchange)
            return
        self.open[key] = self.open.get(key, 0) + 1
        task = self.loop.create_task(self._open(key, host, port, timeout, ssl_context, server_hostname))
        self._tasks.add(task)

        def done(t: asyncio.Task[UpstreamConnection]) -> None:
            self._tasks.discard(t)
            if t.cancelled():
                self.open[key] -= 1
                return
            exc = t.exception()
            if exc is not None:
                self.open[key] -= 1
                if not exchange.finished:
                    on_error(exc)
                return
            conn = t.result()
            self.all.add(conn)
            if exchange.finished:
                self.release(conn)
            else:
                on_ready(conn)

        task.add_done_callback(done)

    async def _open(
        self,
        key: str,
        host: str,
        port: int,
        timeout: float,
        ssl_context: ssl.SSLContext | None,
        server_hostname: str | None,
    ) -> UpstreamConnection:
        async with asyncio.timeout(timeout):
            _, protocol = await self.loop.create_connection(
                lambda: UpstreamConnection(self, key),
                host,
                port,
                ssl=ssl_context,
                server_hostname=server_hostname if ssl_context is not None else None,
            )
        return protocol

    def sweep(self, now: float) -> None:
        """Close idle connections past their idle timeout (called by the watchdog)."""
        for idle in self.idle.values():
            expired = [c for c in idle if c.deadline and c.deadline <= now]
            for conn in expired:
                conn.close()

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for conn in list(self.all):
            conn.close()
