"""A small HTTP/1.1 server for the admin API: an asyncio protocol fed by httptools.

Like the proxy's protocol it only collects parser callbacks; complete requests are queued and one
task per busy connection answers them in order (admin handlers may await, e.g. `POST /config`).
Limits: a 16 MiB body (413, as the body arrives, not after), 64 KiB of headers, 8 KiB of target;
a connection idle for a minute is closed. The listener binds with SO_REUSEPORT so every worker
process of a node can share it and any of them may answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Protocol, cast
from urllib.parse import parse_qs, unquote

import httptools
import orjson

from forecourt import __version__

__all__ = ["MAX_BODY_BYTES", "AdminApp", "AdminRequest", "AdminResponse", "AdminServer"]

log = logging.getLogger("forecourt.admin")

MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024
MAX_TARGET_BYTES = 8 * 1024
IDLE_TIMEOUT = 60.0
_MAX_QUEUED = 16


@dataclass(slots=True)
class AdminRequest:
    """One admin request: decoded path segments, query parameters, lower-cased headers, body."""

    method: str
    target: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    keep_alive: bool = True

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def segments(self) -> list[str]:
        return [unquote(part) for part in self.path.split("/") if part]

    @property
    def query(self) -> dict[str, str]:
        parsed = parse_qs(self.target.partition("?")[2], keep_blank_values=True)
        return {name: values[-1] for name, values in parsed.items()}

    def flag(self, name: str) -> bool:
        """A query flag as Kong reads them: `?name`, `?name=1` or `?name=true`."""
        value = self.query.get(name)
        return value is not None and value.lower() in ("", "1", "true", "yes", "on")


@dataclass(slots=True)
class AdminResponse:
    status: int
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, status: int, data: object) -> AdminResponse:
        return cls(status, orjson.dumps(data))

    @classmethod
    def message(cls, status: int, message: str) -> AdminResponse:
        return cls.json(status, {"message": message})


class AdminApp(Protocol):
    """What the server serves: one coroutine per request."""

    def handle(self, request: AdminRequest) -> Awaitable[AdminResponse]: ...


class _Rejected(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message


class AdminConnection(asyncio.Protocol):
    """One admin client connection."""

    def __init__(self, server: AdminServer) -> None:
        self.server = server
        self.app = server.app
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.parsing: AdminRequest | None = None
        self.header_bytes = 0
        self.body: list[bytes] = []
        self.body_bytes = 0
        self.queue: deque[AdminRequest] = deque()
        self.task: asyncio.Task[None] | None = None
        self.closing = False
        self.paused = False
        self.failure: AdminResponse | None = None
        self.idle: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ connection events
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.server.connections.add(self)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.server.connections.discard(self)
        if self.idle is not None:
            self.idle.cancel()
        # A running handler finishes (a config swap must not stop halfway); its answer is dropped.
        self.queue.clear()

    def data_received(self, data: bytes) -> None:
        if self.closing or self.failure is not None:
            return
        self._arm_idle()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _Rejected):
                self._fail(cause.status, cause.message)
            else:
                self._fail(400, "Bad request")
            return
        except httptools.HttpParserUpgrade:
            self._fail(400, "Bad request: upgrades are not supported")
            return
        except httptools.HttpParserError:
            self._fail(400, "Bad request")
            return
        if self.queue and self.task is None:
            self.task = self.loop.create_task(self._serve())
        if len(self.queue) >= _MAX_QUEUED and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    # ------------------------------------------------------------------ parser callbacks
    def on_message_begin(self) -> None:
        self.parsing = AdminRequest(method="", target="")
        self.header_bytes = 0
        self.body = []
        self.body_bytes = 0

    def on_url(self, url: bytes) -> None:
        assert self.parsing is not None
        self.parsing.target += url.decode("latin-1")
        if len(self.parsing.target) > MAX_TARGET_BYTES:
            raise _Rejected(414, "URI too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.parsing is not None
        self.header_bytes += len(name) + len(value) + 4
        if self.header_bytes > MAX_HEADER_BYTES:
            raise _Rejected(431, "Request header fields too large")
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers = self.parsing.headers
        headers[key] = f"{headers[key]}, {text}" if key in headers else text

    def on_headers_complete(self) -> None:
        req = self.parsing
        assert req is not None
        req.method = self.parser.get_method().decode("latin-1")
        req.keep_alive = self.parser.should_keep_alive()
        length = req.headers.get("content-length")
        if length is not None and length.strip().isdigit() and int(length) > MAX_BODY_BYTES:
            raise _Rejected(413, f"Request body too large (the limit is {MAX_BODY_BYTES} bytes)")

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > MAX_BODY_BYTES:
            raise _Rejected(413, f"Request body too large (the limit is {MAX_BODY_BYTES} bytes)")
        self.body.append(body)

    def on_message_complete(self) -> None:
        req = self.parsing
        assert req is not None
        req.body = b"".join(self.body)
        self.body = []
        self.parsing = None
        self.queue.append(req)

    # ------------------------------------------------------------------ serving
    async def _serve(self) -> None:
        try:
            while self.queue and not self.closing:
                req = self.queue.popleft()
                try:
                    response = await self.app.handle(req)
                except Exception:
                    log.exception("admin API: %s %s failed", req.method, req.target)
                    response = AdminResponse.message(500, "An unexpected error occurred")
                self._write(response, keep_alive=req.keep_alive, head=req.method == "HEAD")
                if not req.keep_alive:
                    self.close()
                    return
                if self.paused and self.failure is None and len(self.queue) < _MAX_QUEUED // 2:
                    self.paused = False
                    if self.transport is not None:
                        self.transport.resume_reading()
            if self.failure is not None and not self.closing:
                self._write(self.failure, keep_alive=False)
                self.close()
        finally:
            self.task = None

    def _write(self, response: AdminResponse, *, keep_alive: bool, head: bool = False) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        try:
            phrase = HTTPStatus(response.status).phrase
        except ValueError:
            phrase = ""
        lines = [
            f"HTTP/1.1 {response.status} {phrase}",
            f"Server: forecourt/{__version__}",
            f"Content-Length: {len(response.body)}",
        ]
        if response.body or response.status not in (204, 304):
            lines.append(f"Content-Type: {response.content_type}")
        lines.extend(f"{name}: {value}" for name, value in response.headers)
        if not keep_alive:
            lines.append("Connection: close")
        head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.transport.write(head_bytes if head else head_bytes + response.body)

    def _fail(self, status: int, message: str) -> None:
        """A request we cannot parse or will not read: answer after the queued ones, then close."""
        self.failure = AdminResponse.message(status, message)
        if self.transport is not None and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        if self.task is None:
            self.task = self.loop.create_task(self._serve())

    def _arm_idle(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        self.idle = self.loop.call_later(IDLE_TIMEOUT, self._on_idle)

    def _on_idle(self) -> None:
        if self.task is None:
            self.close()
        else:
            self._arm_idle()

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            if self.transport is not None:
                self.transport.close()


class AdminServer:
    """The admin listener(s) and what runs beside them; `close()` stops everything."""

    def __init__(
        self, app: AdminApp, loop: asyncio.AbstractEventLoop, on_close: Callable[[], None] | None = None
    ) -> None:
        self.app = app
        self.loop = loop
        self.servers: list[asyncio.Server] = []
        self.connections: set[AdminConnection] = set()
        self._on_close = on_close

    async def listen(self, host: str, port: int) -> None:
        server = await self.loop.create_server(
            lambda: AdminConnection(self), host, port, reuse_port=True, backlog=512
        )
        self.servers.append(server)

    @property
    def port(self) -> int:
        """The first listener's port (handy when it was bound to port 0)."""
        return int(self.servers[0].sockets[0].getsockname()[1])

    def close(self) -> None:
        for server in self.servers:
            server.close()
        for conn in list(self.connections):
            conn.close()
        if self._on_close is not None:
            self._on_close()
            self._on_close = None
