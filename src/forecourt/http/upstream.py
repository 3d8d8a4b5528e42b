"""The upstream side of the proxy: one keep-alive connection to one target, fed by httptools.

The protocol parses responses and hands each event straight to the `Exchange` currently using it;
between exchanges it sits idle in the pool, and any byte arriving then means the upstream is
confused, so the connection is dropped rather than reused. The response head is handed over as the
bytes it arrived in (see `response_head`): there is no per-header callback.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

import httptools

if TYPE_CHECKING:
    from forecourt.http.pool import ConnectionPool
    from forecourt.http.upstream_user import UpstreamUser

from forecourt.http.response_head import MAX_RESPONSE_HEAD

_WRITE_HIGH_WATER = 256 * 1024


class _HeadResponseDone(Exception):
    """Stops the parser after the head of a response to HEAD: such a response has no body."""


class UpstreamConnection(asyncio.Protocol):
    """A pooled connection to one upstream target."""

    __slots__ = (
        "closed",
        "deadline",
        "exchange",
        "head_data",
        "head_keep_alive",
        "in_head",
        "key",
        "no_body",
        "parser",
        "pool",
        "reading_paused",
        "requests",
        "transport",
    )

    def __init__(self, pool: ConnectionPool, key: str) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: UpstreamUser | None = None
        self.head_data = b""  # the response head received so far (until the parser completes it)
        self.in_head = False
        self.closed = False
        self.deadline = 0.0
        self.no_body = False
        self.reading_paused = False
        self.head_keep_alive = True
        self.requests = 0

    # ------------------------------------------------------------------ connection events
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=_WRITE_HIGH_WATER)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        exchange = self.exchange
        if exchange is not None:
            self.exchange = None
            exchange.upstream_lost(exc)

    def eof_received(self) -> bool | None:
        return False

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.pause_request_body()

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.resume_request_body()

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:
            self.close()
            return
        if self.in_head:
            head = self.head_data + data  # usually the first read: no copy
            if len(head) > MAX_RESPONSE_HEAD and head.find(b"\r\n\r\n", 0, MAX_RESPONSE_HEAD) < 0:
                exchange.upstream_garbage()
                return
            self.head_data = head
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadResponseDone):
                self.parser = httptools.HttpResponseParser(self)
                exchange.response_done(self.head_keep_alive)
                return
            exchange.upstream_garbage()
            return
        except httptools.HttpParserError:
            exchange.upstream_garbage()
            return
        if self.exchange is exchange:
            exchange.flush()

    # ------------------------------------------------------------------ use by an exchange
    def send(self, exchange: UpstreamUser, data: bytes, head_request: bool) -> None:
        """Start one request/response cycle on this connection."""
        self.exchange = exchange
        self.no_body = head_request
        self.head_data = b""
        self.in_head = True
        self.requests += 1
        assert self.transport is not None
        self.transport.write(data)

    def pause_reading(self) -> None:
        """Backpressure from a slow client: stop reading this upstream's response for now."""
        if self.transport is not None and not self.closed and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed and self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def close(self) -> None:
        """Drop the connection; it is never reused."""
        if not self.closed:
            self.closed = True
            self.pool.forget(self)
            self.exchange = None
            if self.transport is not None:
                self.transport.close()

    def abort(self) -> None:
        """Drop the connection at once, discarding anything buffered for the upstream."""
        if not self.closed:
            self.closed = True
            self.pool.forget(self)
            self.exchange = None
            if self.transport is not None:
                self.transport.abort()

    def on_timeout(self, now: float) -> None:
        self.deadline = 0.0
        exchange = self.exchange
        if exchange is None:
            self.close()  # idle too long in the pool
        else:
            exchange.upstream_timeout()

    # ------------------------------------------------------------------ parser callbacks
    def on_headers_complete(self) -> None:
        exchange = self.exchange
        assert exchange is not None
        parser = self.parser
        data = self.head_data
        end = data.find(b"\r\n\r\n") + 4  # llhttp insists on CRLFs: this is the head's end
        status = parser.get_status_code()
        if status < 200 and status != 101:
            # Interim response (100/103): not forwarded; the final head follows it.
            self.head_data = data[end:]
            return
        self.in_head = False
        self.head_data = b""
        keep_alive = parser.should_keep_alive()
        exchange.response_head(status, data[:end], keep_alive)
        if self.no_body:
            self.head_keep_alive = keep_alive
            raise _HeadResponseDone

    def on_body(self, body: bytes) -> None:
        exchange = self.exchange
        if exchange is not None:
            exchange.response_body(body)

    def on_message_complete(self) -> None:
        exchange = self.exchange
        if exchange is not None and exchange.response_started:
            exchange.response_done(self.parser.should_keep_alive())
