"""One gateway's live state in one worker: the current plan, listeners, pool, log and watchdog.

The runtime is what protocol objects hold on to. `plan` is swapped by a single assignment on
reload; everything a request needs from it is read once, when the request is routed.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from forecourt.http.limits import ServerLimits
from forecourt.http.pool import ConnectionPool, PoolLimits
from forecourt.http.status import NO_ROUTE_MESSAGE
from forecourt.observability import AccessLog
from forecourt.pipeline import Context, Response
from forecourt.proxy.aggregate import AggregateExchange
from forecourt.proxy.forward import Exchange
from forecourt.routing import InvalidPath, normalize_path

if TYPE_CHECKING:
    import socket
    import ssl
    from collections.abc import Sequence

    from forecourt.http.request import Request
    from forecourt.http.server import ClientConnection
    from forecourt.plan import Plan

log = logging.getLogger(__name__)

_WATCHDOG_TICK = 0.1
_ABSOLUTE_FORMS = (b"http://", b"https://")


@dataclass(slots=True, eq=False)
class Listener:
    """One proxy listener (`listen` entry): where it binds and what it tells upstreams."""

    host: str
    port: int
    ssl: bool = False

    @property
    def scheme(self) -> str:
        return "https" if self.ssl else "http"

    def forwarded_block(self, client_ip: str) -> bytes:
        """Per-connection forwarding headers, built once when the connection opens."""
        return (
            f"X-Real-IP: {client_ip}\r\nX-Forwarded-Proto: {self.scheme}\r\nX-Forwarded-Port: {self.port}\r\n"
        ).encode("latin-1")


class GatewayRuntime:
    """Shared state of one gateway (one config file) inside one worker process."""

    def __init__(
        self,
        plan: Plan,
        *,
        loop: asyncio.AbstractEventLoop,
        limits: ServerLimits | None = None,
        pool_limits: PoolLimits | None = None,
        access_log: AccessLog | None = None,
        request_id_header: bytes = b"X-Forecourt-Request-Id",
        name: str = "",
    ) -> None:
        self.plan = plan
        self.loop = loop
        # `loop.time`, bound once: the per-request path reads the clock ~6 times, and compiled
        # code calls a stored callable without looking the method up each time.
        self.clock: Callable[[], float] = loop.time
        self.name = name
        self.limits = limits or ServerLimits()
        self.pool = ConnectionPool(loop, pool_limits)
        self.access_log = access_log or AccessLog(None)
        self.request_id_header = request_id_header
        self.request_id_name = request_id_header.decode("latin-1")
        self.clients: set[ClientConnection] = set()
        self.servers: list[asyncio.Server] = []
        self.retries = 0
        # Kong's /status counters (summed across workers by admin/counters.py).
        self.connections_accepted = 0
        self.total_requests = 0
        self._id_prefix = os.urandom(8).hex()
        self._id_serial = 1 << 60
        self._watchdog: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ per request
    def new_request_id(self) -> str:
        """32 hex digits like Kong's request ids: a random per-worker prefix and a counter. The
        counter starts at 2**60 so `hex()` always gives 16 digits: a format spec ("016x") goes
        through the string formatter, which cost more than the rest of routing."""
        self._id_serial += 1
        return self._id_prefix + hex(self._id_serial)[2:]

    def route(self, req: Request, client: ClientConnection) -> None:
        """Normalise the target and resolve the route; errors are recorded on the request."""
        self.total_requests += 1
        req.request_id = self.new_request_id()
        target = req.target
        query_at = target.find(b"?")
        raw = target if query_at < 0 else target[:query_at]
        if query_at >= 0:
            req.query = target[query_at:]
        if raw[:1] != b"/":
            raw = self._absolute_form(req, raw)
            if not raw:
                return
        raw_path = raw.decode("latin-1")
        req.raw_path = raw_path
        try:
            path = normalize_path(raw_path)
        except InvalidPath:
            # A target the gateway cannot route safely says the client (or something in between)
            # is confused: answer and close, as for any other malformed request.
            req.error = 400
            req.error_message = "Bad request: invalid request path"
            req.keep_alive = False
            return
        req.path = path
        host = req.host
        match = self.plan.router.resolve(
            req.method,
            host.decode("latin-1") if host is not None else None,
            path,
            req.headers,
            client.listener.scheme,
            client.sni,
        )
        if match is None:
            req.error = 404
            req.error_message = NO_ROUTE_MESSAGE
            return
        if match.https_required:
            # Kong routes the request, then refuses it: 426 (or the route's redirect status).
            route = match.payload
            req.error = route.https_redirect_status_code
            req.error_message = "Please use HTTPS protocol"
            return
        req.match = match

    def _absolute_form(self, req: Request, raw: bytes) -> bytes:
        """`GET http://host/path`: the target's authority replaces Host (RFC 9112 §3.2.2)."""
        lowered = raw[:8].lower()
        for prefix in _ABSOLUTE_FORMS:
            if lowered.startswith(prefix):
                rest = raw[len(prefix) :]
                slash = rest.find(b"/")
                authority, path = (rest, b"/") if slash < 0 else (rest[:slash], rest[slash:])
                if not authority:
                    break
                req.host = authority
                return path
        req.error = 400
        req.error_message = "Bad request: invalid request target"
        req.keep_alive = False
        req.raw_path = raw.decode("latin-1")
        return b""

    def serve(self, client: ClientConnection, req: Request) -> None:
        """Serve a routed request (the head of the client's queue)."""
        match = req.match
        assert match is not None
        route = match.payload
        chain = route.chain
        # An aggregate route's exchange fans out to its backends where another one would forward.
        make = Exchange if route.aggregate is None else AggregateExchange
        if chain is None:
            exchange = make(self, client, req, route)
            client.exchange = exchange
            exchange.start()
            return
        req.parsed_headers = req.headers[:]  # see Exchange.build_head
        ctx = Context(req, client, route, chain)
        exchange = make(self, client, req, route, ctx)
        client.exchange = exchange
        result = chain.run_access(ctx)
        if result is None:
            exchange.start()
        elif isinstance(result, Response):
            exchange.respond(result)
        else:
            task = self.loop.create_task(self._finish_access(exchange, result))
            exchange.access_task = task
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _finish_access(self, exchange: Exchange, pending: Awaitable[Response | None]) -> None:
        """The rest of an access phase in which some plugin had to wait."""
        try:
            result = await pending
        except Exception:
            log.exception("plugin access phase failed")
            exchange.access_task = None
            exchange.fail(500, None)
            return
        exchange.access_task = None
        if exchange.finished:
            return
        if result is None:
            exchange.start()
        else:
            exchange.respond(result)

    def note_retry(self, exchange: Exchange) -> None:
        self.retries += 1

    # ------------------------------------------------------------------ lifecycle
    async def start(
        self,
        listeners: list[Listener],
        ssl_context: ssl.SSLContext | None = None,
        sockets: Sequence[Sequence[socket.socket]] | None = None,
    ) -> None:
        """Bind every listener (SO_REUSEPORT, so worker processes can share them).

        With `sockets` (`sockets[i]` already bound for `listeners[i]`, inherited from the supervisor)
        nothing is bound here: this worker accepts from the shared sockets.
        """
        from forecourt.http.server import ClientConnection

        for index, listener in enumerate(listeners):

            def accept(listener: Listener = listener) -> ClientConnection:
                self.connections_accepted += 1
                return ClientConnection(self, listener)

            if sockets is not None:
                for sock in sockets[index]:
                    self.servers.append(
                        await self.loop.create_server(
                            accept, sock=sock, backlog=4096, ssl=ssl_context if listener.ssl else None
                        )
                    )
                continue
            server = await self.loop.create_server(
                accept,
                listener.host,
                listener.port,
                reuse_port=True,
                backlog=4096,
                ssl=ssl_context if listener.ssl else None,
            )
            self.servers.append(server)
        self._watchdog = self.loop.call_later(_WATCHDOG_TICK, self._tick)

    def _tick(self) -> None:
        now = self.loop.time()
        for client in [c for c in self.clients if c.deadline and c.deadline <= now]:
            client.on_timeout(now)
        for conn in [c for c in self.pool.all if c.deadline and c.deadline <= now]:
            conn.on_timeout(now)
        self.access_log.flush()
        self._watchdog = self.loop.call_later(_WATCHDOG_TICK, self._tick)

    def stop_accepting(self) -> None:
        for server in self.servers:
            server.close()

    async def drain(self, timeout: float) -> None:
        """Wait for in-flight exchanges to finish (then close idle keep-alive connections)."""
        deadline = self.loop.time() + timeout
        while self.loop.time() < deadline:
            busy = [c for c in self.clients if c.exchange is not None or c.queue]
            for client in self.clients:
                if client.exchange is None and not client.queue:
                    client.close()
            if not busy:
                break
            await asyncio.sleep(0.05)

    def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        for client in list(self.clients):
            client.close()
        self.pool.close()
        self.access_log.flush()
