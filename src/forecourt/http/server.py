"""The client side of the proxy: an asyncio protocol fed by httptools.

The protocol only collects parser callbacks into a `Request` and hands complete heads to an
`Exchange` (proxy.forward); it never blocks and creates no task per request. Three rules keep
malformed input away from upstreams:

* nothing is dispatched from inside a parser callback: requests are queued and dispatched only
  after `feed_data` returned without error, so a framing error anywhere in the bytes received so
  far discards the request before any upstream sees it;
* a route with `request_buffering` (Kong's default) is dispatched only once the whole body has
  been parsed, so a malformed chunk later in the body can never reach an upstream either;
* every parse error answers 400/413/414/431/501/505 and closes the connection.

Pipelined requests are answered strictly in order: only the head of the queue owns the transport.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, cast

import httptools

from forecourt.http.headers import CONNECTION as _CONNECTION
from forecourt.http.headers import CONTENT_LENGTH as _CONTENT_LENGTH
from forecourt.http.headers import EXPECT as _EXPECT
from forecourt.http.headers import FORWARDED as _FORWARDED
from forecourt.http.headers import FORWARDED_FOR as _FORWARDED_FOR
from forecourt.http.headers import HOST as _HOST
from forecourt.http.headers import TRANSFER_ENCODING as _TRANSFER_ENCODING
from forecourt.http.headers import classify_request_header
from forecourt.http.request import Request
from forecourt.http.status import error_response

if TYPE_CHECKING:
    from forecourt.proxy.forward import Exchange
    from forecourt.runtime import GatewayRuntime, Listener

_METHODS: dict[bytes, str] = {
    m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT")
}
_BODY_HIGH_WATER = 1024 * 1024
_WRITE_HIGH_WATER = 256 * 1024
_KNOWN_CONNECTION_TOKENS = frozenset({b"close", b"keep-alive", b"upgrade", b"te"})

_LINGER_SECONDS = 2.0


class RequestRejected(Exception):
    """Raised inside a parser callback to stop parsing with a status for the client."""

    def __init__(self, status: int, message: str | None = None) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message


class ClientConnection(asyncio.Protocol):
    """One downstream connection: parses requests and serves them, in order, through exchanges."""

    __slots__ = (
        "client_ip",
        "closing",
        "conn_headers",
        "conn_headers_xff",
        "deadline",
        "exchange",
        "head_bytes",
        "headers",
        "ip_bytes",
        "listener",
        "parser",
        "parsing",
        "queue",
        "reading_paused",
        "runtime",
        "sni",
        "transport",
        "write_paused",
    )

    def __init__(self, runtime: GatewayRuntime, listener: Listener) -> None:
        self.runtime = runtime
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[Request] = deque()
        self.parsing: Request | None = None
        self.headers: list[tuple[bytes, bytes]] = []  # the header list of the request being parsed
        self.exchange: Exchange | None = None
        self.head_bytes = 0
        self.closing = False
        self.reading_paused = False
        self.write_paused = False
        self.deadline = 0.0
        self.client_ip = ""
        self.conn_headers = b""
        self.conn_headers_xff = b""
        self.ip_bytes = b""

    # ------------------------------------------------------------------ connection events
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=_WRITE_HIGH_WATER)
        peer = transport.get_extra_info("peername")
        self.client_ip = peer[0] if isinstance(peer, tuple) else "127.0.0.1"
        self.conn_headers = self.listener.forwarded_block(self.client_ip)
        self.ip_bytes = self.client_ip.encode("latin-1")
        # What a request without an X-Forwarded-For of its own sends upstream, built once.
        self.conn_headers_xff = b"X-Forwarded-For: " + self.ip_bytes + b"\r\n" + self.conn_headers
        ssl_object = transport.get_extra_info("ssl_object")
        self.sni: str | None = ssl_object.server_hostname if ssl_object is not None else None
        self.deadline = self.runtime.clock() + self.runtime.limits.header_timeout
        self.runtime.clients.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.runtime.clients.discard(self)
        exchange = self.exchange
        if exchange is not None:
            self.exchange = None
            exchange.client_gone()
        self.queue.clear()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.exchange is not None:
            self.exchange.pause_upstream_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.exchange is not None:
            self.exchange.resume_upstream_reading()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        before = self.parsing
        try:
            self.parser.feed_data(data)
        except RequestRejected as rejected:
            self._reject(rejected.status, rejected.message)
            return
        except httptools.HttpParserUpgrade:
            # Upgrades (WebSocket) are not proxied yet: serve the request as a plain one, then close.
            if self.parsing is not None and not self.parsing.complete:
                self._reject(400)
                return
            if self.queue:
                self.queue[-1].keep_alive = False
            self.closing_after_queue()
        except httptools.HttpParserCallbackError as callback_error:
            # (Distinct names per except clause: compiled, one name has one type.)
            cause = callback_error.__context__
            if isinstance(cause, RequestRejected):
                self._reject(cause.status, cause.message)
            else:
                self._reject(400)
            return
        except httptools.HttpParserError:
            self._reject(400)
            return
        parsing = self.parsing
        if parsing is not None and parsing is before and parsing.match is None and not parsing.error:
            # A head still incomplete after another read. httptools keeps a partial header line to
            # itself until it ends, so bound the head here by whole reads (a head that began in
            # this read is bounded by the read; counting it from the next one never over-counts
            # bytes of earlier pipelined requests). An over-long target never gets here: `on_url`
            # sees every piece of it and answers 414 itself.
            self.head_bytes += len(data)
            limits = self.runtime.limits
            if self.head_bytes > limits.max_request_line + limits.max_header_bytes:
                self._reject(431)
                return
        self.pump()

    def closing_after_queue(self) -> None:
        """Stop reading: the queued requests are the last ones on this connection."""
        if self.transport is not None and not self.reading_paused:
            self.transport.pause_reading()
            self.reading_paused = True
        self.parser = httptools.HttpRequestParser(self)

    # ------------------------------------------------------------------ parser callbacks
    def on_message_begin(self) -> None:
        req = Request(self.runtime.clock())
        self.parsing = req
        self.headers = req.headers
        self.head_bytes = 0

    def on_url(self, url: bytes) -> None:
        req = self.parsing
        assert req is not None
        req.target += url
        if len(req.target) > self.runtime.limits.max_request_line:
            raise RequestRejected(414)

    def on_header(self, name: bytes, value: bytes) -> None:
        # Called for every header of every request: only collect. The count limit is checked once
        # the head is complete (a single read bounds how many can pile up before that).
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        req = self.parsing
        assert req is not None
        runtime = self.runtime
        limits = runtime.limits
        headers = req.headers
        if len(headers) > limits.max_header_count:
            raise RequestRejected(431)
        parser = self.parser
        raw_method = parser.get_method()
        req.method = _METHODS.get(raw_method) or raw_method.decode("latin-1")
        version = parser.get_http_version()
        if version != "1.1":
            if version != "1.0":
                raise RequestRejected(505)
            req.version = "1.0"
        req.keep_alive = parser.should_keep_alive()
        # One pass over the headers: find what framing and routing need, and build the block of
        # headers forwarded as they are (everything the proxy does not drop or rebuild), so a
        # plugin-free request never walks its headers again. (A plain loop: measured faster than
        # map/compress pipelines over the list.)
        size = 0
        host: bytes | None = None
        forwarded: list[bytes] = []
        for name, value in headers:
            kind = classify_request_header(name)
            if kind == _FORWARDED:
                forwarded.append(name)
                forwarded.append(b": ")
                forwarded.append(value)
                forwarded.append(b"\r\n")
                continue
            size += len(name) + len(value)
            if kind == _HOST:
                if host is not None:
                    raise RequestRejected(400, "Bad request: more than one Host header")
                host = value
            elif kind == _CONTENT_LENGTH:
                req.content_length = int(value)
            elif kind == _TRANSFER_ENCODING:
                _check_transfer_encoding(value, req.version)
                req.chunked = True
            elif kind == _EXPECT:
                if value.lower() != b"100-continue":
                    raise RequestRejected(417)
                req.expect_continue = True
            elif kind == _CONNECTION:
                tokens = frozenset(t.strip().lower() for t in value.split(b","))
                if not tokens <= _KNOWN_CONNECTION_TOKENS:
                    req.conn_tokens = tokens - _KNOWN_CONNECTION_TOKENS
            elif kind == _FORWARDED_FOR:
                req.xff = value if req.xff is None else req.xff + b", " + value
        if forwarded:
            block = b"".join(forwarded)
            req.forwarded_block = block
            size += len(block)
        if size > limits.max_header_bytes:
            raise RequestRejected(431)
        if host is None and req.version == "1.1":
            raise RequestRejected(400, "Bad request: missing Host header")
        if req.content_length is not None and req.content_length > limits.max_body_bytes:
            raise RequestRejected(413)
        req.host = host
        runtime.route(req, self)
        self.queue.append(req)
        self.deadline = req.start + limits.body_timeout if req.chunked or req.content_length else 0.0

    def on_body(self, body: bytes) -> None:
        req = self.parsing
        assert req is not None
        req.body_bytes += len(body)
        if req.body_bytes > self.runtime.limits.max_body_bytes:
            raise RequestRejected(413)
        self.deadline = self.runtime.clock() + self.runtime.limits.body_timeout
        exchange = self.exchange
        if exchange is not None and exchange.req is req and exchange.streaming_body:
            exchange.send_body(body)
            return
        if req.error:
            return
        req.body.append(body)
        if req.body_bytes > _BODY_HIGH_WATER and req.match is not None and not _buffering(req):
            self._pause_reading()

    def on_message_complete(self) -> None:
        req = self.parsing
        assert req is not None
        req.complete = True
        self.parsing = None
        self.head_bytes = 0
        exchange = self.exchange
        if exchange is not None and exchange.req is req and exchange.streaming_body:
            exchange.body_complete()
        if len(self.queue) >= self.runtime.limits.max_pipelined:
            self._pause_reading()
        if not req.keep_alive:
            self.closing_after_queue()

    # ------------------------------------------------------------------ serving
    def pump(self) -> None:
        """Start serving the head of the queue when nothing is being served."""
        while self.exchange is None and self.queue and not self.closing:
            req = self.queue[0]
            if req.error:
                if not req.complete:
                    # Answer now rather than read a body nobody will use; the unread rest of it
                    # makes the connection unusable, so it closes.
                    req.keep_alive = False
                self.queue.popleft()
                self._write_error(req)
                continue
            if not req.complete and _buffering(req):
                if req.expect_continue and not req.body_bytes:
                    req.expect_continue = False
                    assert self.transport is not None
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                return
            self.queue.popleft()
            self.deadline = 0.0
            self.runtime.serve(self, req)
            if self.reading_paused and len(self.queue) < self.runtime.limits.max_pipelined // 2:
                self._resume_reading()

    def exchange_done(self, keep_alive: bool) -> None:
        """Called by the exchange once its response is fully written."""
        self.exchange = None
        if not keep_alive or self.closing:
            if self.parsing is not None:
                self.linger()  # the client is still sending a request nobody will read
            else:
                self.close()
            return
        if not self.queue and self.parsing is None:
            self.deadline = self.runtime.clock() + self.runtime.limits.keepalive_timeout
        self.pump()
        self._resume_reading_when_idle()

    def _resume_reading_when_idle(self) -> None:
        # A method of its own: compiled (mypyc), `self.exchange` read in `exchange_done` after its
        # `= None` would be taken as still None even though `pump` may have set it.
        if self.reading_paused and self.exchange is None and not self.queue and self.parser is not None:
            self._resume_reading()

    def close(self) -> None:
        self.closing = True
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()  # also ends a lingering close early (shutdown)

    def linger(self) -> None:
        """Close after an answer the client may still be sending a request to (nginx's lingering
        close): a plain close with unread input makes the kernel send RST, and an RST can destroy
        the answer before the client reads it. So send FIN after the answer, read and discard
        whatever still comes for a moment, and close on the client's EOF or when that runs out."""
        transport = self.transport
        if self.closing or transport is None:
            return
        if not transport.can_write_eof():
            self.close()
            return
        self.closing = True
        self.queue.clear()
        transport.write_eof()
        self.deadline = self.runtime.clock() + _LINGER_SECONDS
        if self.reading_paused:
            self.reading_paused = False
            transport.resume_reading()

    def on_timeout(self, now: float) -> None:
        """The watchdog saw `deadline` pass: header, body or keep-alive idle timeout, or the end
        of a lingering close."""
        self.deadline = 0.0
        if self.closing:
            if self.transport is not None:
                self.transport.abort()
            return
        if self.exchange is not None:
            return
        if self.parsing is not None or self.queue:
            req = self.parsing or self.queue[0]
            req.error = 408
            req.keep_alive = False
            self.queue.clear()
            self._write_error(req)
        else:
            self.close()

    # ------------------------------------------------------------------ errors
    def _reject(self, status: int, message: str | None = None) -> None:
        """A parse error: drop the partial request, answer after what was already queued, close."""
        req = self.parsing or Request(self.runtime.clock())
        self.parsing = None
        if req in self.queue:
            self.queue.remove(req)
        exchange = self.exchange
        if exchange is not None and exchange.req is req:
            # Streaming body went bad midway: the upstream must not take a truncated request.
            exchange.abort_request()
            return
        req.error = status
        req.error_message = message
        req.keep_alive = False
        self.queue.append(req)
        self.closing_after_queue()
        self.pump()

    def _write_error(self, req: Request) -> None:
        """Write a gateway-made error for `req`; close unless the request allows keep-alive."""
        runtime = self.runtime
        if not req.request_id:
            req.request_id = runtime.new_request_id()
        data = error_response(
            req.error,
            req.request_id,
            req.error_message,
            close=not req.keep_alive,
            head_only=req.method == "HEAD",
            request_id_header=runtime.request_id_header,
        )
        if self.transport is not None:
            self.transport.write(data)
        runtime.access_log.log_rejected(self, req)
        if not req.keep_alive:
            self.linger()

    def _pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None and not self.closing:
            self.reading_paused = False
            self.transport.resume_reading()

    def pause_request_body(self) -> None:
        """Upstream write buffer is full: stop reading the client's body."""
        self._pause_reading()

    def resume_request_body(self) -> None:
        self._resume_reading()


def _buffering(req: Request) -> bool:
    match = req.match
    return match is None or match.payload.request_buffering


def _check_transfer_encoding(value: bytes, version: str) -> None:
    """llhttp has already insisted that `chunked` comes last; any other coding is not ours (501)."""
    if version == "1.0":
        raise RequestRejected(400, "Bad request: Transfer-Encoding in an HTTP/1.0 request")
    codings = [c.strip().lower() for c in value.split(b",")]
    if codings != [b"chunked"]:
        raise RequestRejected(501, "Transfer-Encoding not implemented")
