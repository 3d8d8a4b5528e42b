"""A tiny asyncio HTTP/1.1 client for the providers: one request per connection, JSON in and out.

Why not a dependency: the providers need two things, a JSON request with a deadline and a
long-lived streamed response (etcd's watch) read line by line, both plain HTTP/1.1 against a
registry on the local network. httptools (already a dependency) parses the response, including
chunked framing, so this is a few dozen lines; httpx or aiohttp would add a runtime dependency for
it. A connection per request keeps it simple: registries are polled every few seconds at most, and
a watch holds its one connection for hours.

Errors are :class:`HttpClientError` (an ``OSError``): connection failures, timeouts and malformed
responses alike. A response with an error status is not an exception; callers check ``status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httptools
import orjson

__all__ = ["HttpClientError", "HttpResponse", "HttpStream", "request"]

_USER_AGENT = b"forecourt-discovery"


class HttpClientError(OSError):
    """The request failed: unreachable, timed out, or the response could not be parsed."""


@dataclass(slots=True)
class HttpResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise HttpClientError(f"response is not JSON: {self.body[:80]!r}") from exc


class _Collector:
    """httptools callbacks: status and headers, then body pieces into a queue."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.headers_done = asyncio.Event()
        self.pieces: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.headers_done.set()

    def on_body(self, body: bytes) -> None:
        self.pieces.put_nowait(bytes(body))

    def on_message_complete(self) -> None:
        self.complete = True
        self.pieces.put_nowait(None)


class HttpStream:
    """``async with HttpStream("POST", url, json=...) as stream:`` then ``stream.status`` and
    ``async for line in stream.lines()``. ``timeout`` bounds connecting and the response head only."""

    def __init__(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HttpClientError(f"not an http(s) URL: {url}")
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.tls = ssl_context or (ssl.create_default_context() if parts.scheme == "https" else None)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        body = orjson.dumps(json) if json is not None else b""
        lines = [
            f"{method} {target} HTTP/1.1".encode(),
            b"Host: " + parts.netloc.rpartition("@")[2].encode("idna"),
            b"User-Agent: " + _USER_AGENT,
            b"Accept: application/json",
            b"Connection: close",
        ]
        if json is not None or method in ("POST", "PUT"):
            lines += [b"Content-Type: application/json", b"Content-Length: %d" % len(body)]
        lines += [f"{k}: {v}".encode("latin-1") for k, v in (headers or {}).items()]
        self._request = b"\r\n".join(lines) + b"\r\n\r\n" + body
        self.timeout = timeout
        self.status = 0
        self.headers: dict[str, str] = {}
        self._collector = _Collector()
        self._parser = httptools.HttpResponseParser(self._collector)
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None
        self._error: BaseException | None = None

    async def __aenter__(self) -> HttpStream:
        try:
            async with asyncio.timeout(self.timeout):
                reader, self._writer = await asyncio.open_connection(self.host, self.port, ssl=self.tls)
                self._writer.write(self._request)
                self._reading = asyncio.get_running_loop().create_task(self._read(reader))
                head = asyncio.ensure_future(self._collector.headers_done.wait())
                await asyncio.wait({head, self._reading}, return_when=asyncio.FIRST_COMPLETED)
                if not head.done():
                    head.cancel()
                    raise self._error or HttpClientError("connection closed before a response")
        except TimeoutError as exc:
            await self.close()
            raise HttpClientError(
                f"no response from {self.host}:{self.port} within {self.timeout:g}s"
            ) from exc
        except OSError as exc:
            await self.close()
            if isinstance(exc, HttpClientError):
                raise
            raise HttpClientError(f"cannot reach {self.host}:{self.port}: {exc.strerror or exc}") from exc
        except BaseException:
            await self.close()
            raise
        self.status = self._parser.get_status_code()
        self.headers = self._collector.headers
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while not self._collector.complete:
                data = await reader.read(65536)
                if not data:
                    self._error = HttpClientError(f"{self.host}:{self.port} closed the connection")
                    break
                self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._error = HttpClientError(f"bad HTTP response from {self.host}:{self.port}: {exc}")
        except OSError as exc:
            self._error = HttpClientError(f"reading from {self.host}:{self.port} failed: {exc}")
        finally:
            if not self._collector.complete:
                self._collector.pieces.put_nowait(None)

    async def chunks(self) -> AsyncIterator[bytes]:
        """Body pieces as they arrive; raises HttpClientError if the body is cut short."""
        while True:
            piece = await self._collector.pieces.get()
            if piece is None:
                if not self._collector.complete:
                    raise self._error or HttpClientError("response body cut short")
                return
            yield piece

    async def lines(self) -> AsyncIterator[bytes]:
        """Newline-delimited records of a streamed body (etcd's watch), without the newline."""
        pending = b""
        async for piece in self.chunks():
            pending += piece
            *complete, pending = pending.split(b"\n")
            for line in complete:
                if line.strip():
                    yield line
        if pending.strip():
            yield pending

    async def read(self) -> bytes:
        return b"".join([piece async for piece in self.chunks()])

    async def close(self) -> None:
        if self._reading is not None and not self._reading.done():
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reading
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await self._writer.wait_closed()
            self._writer = None


async def request(
    method: str,
    url: str,
    *,
    json: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
) -> HttpResponse:
    """One complete exchange within ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            async with HttpStream(method, url, json=json, headers=headers, timeout=timeout) as stream:
                body = await stream.read()
    except TimeoutError as exc:
        raise HttpClientError(f"{method} {url}: no complete response within {timeout:g}s") from exc
    return HttpResponse(stream.status, stream.headers, body)
