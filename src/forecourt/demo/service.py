"""A small HTTP/1.1 service used by `forecourt demo` and by the tests as a real upstream.

It answers every path with JSON describing the request it received (so a caller can see exactly
what the gateway forwarded), plus a few behaviours that exercise the proxy:

* `/status/<code>` answers that status; `/delay/<ms>` answers after a pause;
* `/bytes/<n>` streams n bytes with Content-Length, `/chunked/<n>` the same with chunked encoding;
* `/close` answers and closes the connection.

Subclasses answer with domain data instead (`forecourt.demo.domain`): `answer()` gets each request
first, and whatever it leaves (None) gets the echo.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field
from typing import Any, cast

import httptools
import orjson

_REASONS = {
    200: b"OK",
    201: b"Created",
    204: b"No Content",
    400: b"Bad Request",
    404: b"Not Found",
    409: b"Conflict",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}
_STREAM_PIECE = 64 * 1024


@dataclass(frozen=True, slots=True)
class DemoRequest:
    """One request as a demo service sees it (header names lower-case, first query value wins)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class DemoAnswer:
    """A demo service's own answer: a status and a JSON document."""

    status: int
    body: Any
    headers: tuple[tuple[str, str], ...] = field(default=())


class DemoService:
    """A named demo service; `serve()` binds it and returns the asyncio server."""

    def __init__(self, name: str, extra: dict[str, Any] | None = None) -> None:
        self.name = name
        self.extra = extra or {}
        self.requests = 0
        self.transports: set[asyncio.Transport] = set()

    def close_connections(self) -> None:
        """Close every open client connection (a server's close() leaves them open)."""
        for transport in list(self.transports):
            transport.close()

    async def answer(self, request: DemoRequest) -> DemoAnswer | None:
        """This service's own answer to `request`; None (the echo service's) echoes the request."""
        return None

    async def serve(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        return await loop.create_server(
            lambda: _DemoProtocol(self), host, port, reuse_address=True, ssl=ssl_context
        )


class _DemoProtocol(asyncio.Protocol):
    def __init__(self, service: DemoService) -> None:
        self.service = service
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.queue: asyncio.Queue[tuple[str, bytes, list[tuple[bytes, bytes]], bytes, bool] | None] = (
            asyncio.Queue()
        )
        self.worker: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.service.transports.add(self.transport)
        self.worker = asyncio.get_running_loop().create_task(self._serve())

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.service.transports.discard(self.transport)
        if self.worker is not None:
            self.worker.cancel()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode()
        self.queue.put_nowait(
            (method, self.url, self.headers, b"".join(self.body), self.parser.should_keep_alive())
        )

    async def _serve(self) -> None:
        while True:
            item = await self.queue.get()
            if item is None:
                return
            method, url, headers, body, keep_alive = item
            self.service.requests += 1
            with contextlib.suppress(ConnectionError):
                keep_alive = await self._respond(method, url, headers, body, keep_alive)
            if not keep_alive and self.transport is not None:
                self.transport.close()
                return

    async def _respond(
        self, method: str, url: bytes, headers: list[tuple[bytes, bytes]], body: bytes, keep_alive: bool
    ) -> bool:
        parsed = httptools.parse_url(url)
        path = parsed.path.decode("latin-1")
        query = (parsed.query or b"").decode("latin-1")
        lowered = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in headers}
        own = await self.service.answer(DemoRequest(method, path, _query_args(query), lowered, body))
        if own is not None:
            extra = b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in own.headers)
            self._write(own.status, orjson.dumps(own.body), keep_alive, method, extra)
            return keep_alive
        parts = path.strip("/").split("/")
        status = 200
        if len(parts) >= 2 and parts[-2] == "delay" and parts[-1].isdigit():
            await asyncio.sleep(int(parts[-1]) / 1000)
        if len(parts) >= 2 and parts[-2] == "status" and parts[-1].isdigit():
            status = int(parts[-1])
        if len(parts) >= 2 and parts[-2] in ("bytes", "chunked") and parts[-1].isdigit():
            await self._stream(int(parts[-1]), chunked=parts[-2] == "chunked", head=method == "HEAD")
            return keep_alive
        if parts[-1] == "close":
            keep_alive = False
        doc = {
            "service": self.service.name,
            "method": method,
            "path": path,
            "query": query,
            "headers": lowered,
            "body": body.decode("utf-8", "replace"),
            **self.service.extra,
        }
        self._write(status, orjson.dumps(doc), keep_alive, method)
        return keep_alive

    def _write(self, status: int, payload: bytes, keep_alive: bool, method: str, extra: bytes = b"") -> None:
        transport = self.transport
        assert transport is not None
        reason = _REASONS.get(status, b"Status")
        head = [
            b"HTTP/1.1 %d %s\r\n" % (status, reason),
            b"Content-Type: application/json\r\n",
            b"X-Service: " + self.service.name.encode() + b"\r\n",
            extra,
        ]
        if status not in (204, 304):
            head.append(b"Content-Length: %d\r\n" % len(payload))
        if not keep_alive:
            head.append(b"Connection: close\r\n")
        head.append(b"\r\n")
        transport.write(b"".join(head) + (b"" if method == "HEAD" or status in (204, 304) else payload))

    async def _stream(self, size: int, *, chunked: bool, head: bool) -> None:
        transport = self.transport
        assert transport is not None
        framing = b"Transfer-Encoding: chunked\r\n" if chunked else b"Content-Length: %d\r\n" % size
        transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n" + framing + b"\r\n")
        if head:
            return
        piece = b"x" * _STREAM_PIECE
        sent = 0
        while sent < size:
            n = min(_STREAM_PIECE, size - sent)
            data = piece[:n]
            transport.write(b"%x\r\n%s\r\n" % (n, data) if chunked else data)
            sent += n
            while transport.get_write_buffer_size() > 4 * _STREAM_PIECE:
                await asyncio.sleep(0.005)
                if transport.is_closing():
                    return
        if chunked:
            transport.write(b"0\r\n\r\n")


def _query_args(query: str) -> dict[str, str]:
    """`a=1&b=x%20y` → {"a": "1", "b": "x y"}; the first value of a repeated name wins."""
    from urllib.parse import parse_qsl

    args: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        args.setdefault(name, value)
    return args


async def serve_forever(services: dict[str, tuple[str, int]]) -> None:
    """Run demo services `{name: (host, port)}` until cancelled."""
    servers = [await DemoService(name).serve(host, port) for name, (host, port) in services.items()]
    try:
        await asyncio.Event().wait()
    finally:
        for server in servers:
            server.close()
