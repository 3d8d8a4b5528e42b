"""Forwarding one request to one service: the exchange between a client and an upstream.

An `Exchange` is a small state machine driven by protocol callbacks on both sides; it owns the
mapping from upstream outcomes to gateway statuses (502 refused/reset/garbage, 504 timeouts, 503 no
target or circuit open), the retry rule, and response framing towards the client. Bytes produced
while one upstream packet is parsed are gathered and written with one `write`, so a small response
costs one syscall.

Resilience (see docs/resilience.md): every attempt's outcome goes to the upstream's passive health
checks and the service's circuit breakers when those are configured (a `None` check otherwise).
The retry rule: a connection that could not be made is always retried; a reset, garbage, a timeout
or a 502/503/504 answer is retried only for an idempotent method and only while nothing reached the
client (a 502/503/504 head is held back, and only when another untried target is available). Every
retry needs a token of the upstream's retry budget and goes to a different target when there is one;
a retry back to a target already tried waits an exponential backoff with full jitter (a timer, no
task). `service.retries` caps the attempts.
"""

from __future__ import annotations

import asyncio
import math
import re
import ssl
from typing import TYPE_CHECKING, Any

from mypy_extensions import mypyc_attr

from forecourt.http.headers import (
    FORWARDED,
    FORWARDED_FOR,
    HOP_BY_HOP,
    IDEMPOTENT_METHODS,
    classify_request_header,
)
from forecourt.http.response_head import header_pairs, reason_phrase
from forecourt.http.status import SERVER_HEADER, VIA_VALUE, error_response, status_line
from forecourt.http.upstream_user import UpstreamUser
from forecourt.upstream.health import Outcome

if TYPE_CHECKING:
    from forecourt.http.request import Request
    from forecourt.http.server import ClientConnection
    from forecourt.http.upstream import UpstreamConnection
    from forecourt.pipeline import Context, Response, ResponseHead
    from forecourt.plan import RoutePlan
    from forecourt.runtime import GatewayRuntime
    from forecourt.upstream import CircuitBreakers, Endpoint
    from forecourt.upstream.retry import RetryWaiter

_NO_BODY_STATUSES = frozenset({204, 304})
# The usual upstream `Connection` values, which name no other header to drop.
_PLAIN_CONNECTION_VALUES = frozenset({b"keep-alive", b"close"})
_RESPONSE_SKIP: frozenset[bytes] = HOP_BY_HOP | {b"via"}
# `Connection` tokens that name no header to drop; Content-Length frames the message, so an
# upstream naming it there must not make the response unframed.
_NOT_DROPPABLE = frozenset({b"close", b"keep-alive", b"content-length"})
_VIA_REQUEST = b"Via: " + VIA_VALUE + b"\r\n"
_VIA_TEXT = VIA_VALUE.decode()
_VIA_RESPONSE = f"Via: {_VIA_TEXT}\r\n"
_END = "\r\n"
_END_CLOSE = "Connection: close\r\n\r\n"
_END_KEEP_ALIVE_10 = "Connection: keep-alive\r\n\r\n"
# Response headers (in a lowercased head) the proxy drops or rewrites besides `Connection`:
# hop-by-hop ones and `Via`. A head without any takes the bytes path.
_RESPONSE_HEADERS_TO_EDIT = re.compile(
    b"\r\n(?:" + b"|".join(re.escape(n) for n in sorted((HOP_BY_HOP - {b"connection"}) | {b"via"})) + b"):"
)
NO_PEER_MESSAGE = "failure to get a peer from the ring-balancer"
BREAKER_OPEN_MESSAGE = "The upstream server is currently unavailable (circuit breaker open)"


# Compiled: one freed instance is kept for the next request (no allocation per request).
@mypyc_attr(free_list_len=1)
class Exchange(UpstreamUser):
    """One request forwarded to a service, with retries, until its response is fully written."""

    __slots__ = (
        "access_task",
        "bytes_sent_upstream",
        "client",
        "client_keep_alive",
        "close_delimited",
        "ctx",
        "head_held",
        "out",
        "pending",
        "rechunk",
        "req",
        "response_bytes",
        "retry_token",
        "route",
        "status",
        "streaming_body",
    )

    def __init__(
        self,
        runtime: GatewayRuntime,
        client: ClientConnection,
        req: Request,
        route: RoutePlan,
        ctx: Context | None = None,
    ) -> None:
        service = route.service
        assert service is not None
        super().__init__(runtime, service)
        self.ctx = ctx
        if ctx is not None:
            ctx.exchange = self  # what log-phase plugins read (status, sizes, timings)
        self.access_task: asyncio.Task[None] | None = None
        self.client = client
        self.req = req
        self.route = route
        self.bytes_sent_upstream = False
        self.streaming_body = False
        self.head_held = False
        self.rechunk = False
        self.close_delimited = False
        self.client_keep_alive = req.keep_alive
        self.status = 0
        self.response_bytes = 0
        self.out: list[bytes] = []
        self.retry_token = False  # holds one of the upstream's retry-budget tokens
        self.pending: asyncio.Handle | RetryWaiter | None = None  # a scheduled or queued retry

    # ------------------------------------------------------------------ picking a target
    def start(self) -> None:
        """Pick a target (a different one on retries, when there is one) and get a connection."""
        self.pending = None
        service = self.service
        balancer = service.targets.balancer
        health = service.health
        if health is not None and health.unavailable:
            self.release_endpoint()
            self.fail(503, NO_PEER_MESSAGE)  # healthy weight below `healthchecks.threshold`
            return
        key = service.hash_key(self.req, self.client.client_ip) if service.hash_key is not None else None
        endpoint = balancer.pick(key, self.tried) if self.tried else balancer.pick(key)
        if endpoint is None and self.tried:
            endpoint = balancer.pick(key)
        breakers = service.breakers
        if breakers is not None and endpoint is not None and not breakers.allow(endpoint):
            endpoint = self.pick_past_open_breakers(breakers, key, endpoint)
            if endpoint is None:
                return
        self.release_endpoint()
        if endpoint is None:
            self.fail(503, NO_PEER_MESSAGE)
            return
        balancer.acquire(endpoint)
        self.endpoint = endpoint
        self.released = False
        self.tried.append(endpoint)
        self.attempts += 1
        conn = self.runtime.pool.take_idle(endpoint.key)
        if conn is not None:
            self.attach(conn)
        else:
            self.start_connect()

    def pick_past_open_breakers(
        self, breakers: CircuitBreakers, key: str | None, refused_first: Endpoint
    ) -> Endpoint | None:
        """Another target whose breaker admits the request; none: answer 503 with Retry-After."""
        balancer = self.service.targets.balancer
        refused = [refused_first]
        while True:
            endpoint = balancer.pick(key, {*self.tried, *refused})
            if endpoint is None and self.tried:
                endpoint = balancer.pick(key, refused)
            if endpoint is None:
                break
            if breakers.allow(endpoint):
                return endpoint
            refused.append(endpoint)
        self.release_endpoint()
        wait = max(1, math.ceil(breakers.retry_after(refused)))
        self.fail(503, BREAKER_OPEN_MESSAGE, extra_headers=b"Retry-After: %d\r\n" % wait)
        return None

    def connect_failed(self, exc: BaseException) -> None:
        if isinstance(exc, TimeoutError):
            self.note_failure(Outcome.TIMEOUT)
            self.retry_or_fail(504, "The upstream server is timed out", sent=False)
        elif isinstance(exc, ssl.SSLError | ssl.CertificateError):
            self.note_failure(Outcome.TCP_FAILURE)
            self.retry_or_fail(502, "TLS handshake with the upstream failed", sent=False)
        else:
            self.note_failure(Outcome.TCP_FAILURE)
            self.retry_or_fail(502, None, sent=False)

    # ------------------------------------------------------------------ sending the request
    def attach(self, conn: UpstreamConnection) -> None:
        """Send the request on `conn` (a warm pooled connection or a fresh one)."""
        if self.finished:
            self.runtime.pool.release(conn)
            return
        self.upstream = conn
        req = self.req
        loop_time = self.runtime.clock()
        head = self.build_head()
        if req.complete:
            body = req.body
            if body:
                data = head + b"Content-Length: %d\r\n\r\n" % req.body_bytes + b"".join(body)
            elif req.content_length is not None or req.method in ("POST", "PUT", "PATCH"):
                data = head + b"Content-Length: 0\r\n\r\n"
            else:
                data = head + b"\r\n"
            conn.deadline = loop_time + self.service.read_timeout
        else:
            # Streaming body (request_buffering off): forward what arrived so far, then chunk by chunk.
            parts = [head]
            if req.chunked:
                parts.append(b"Transfer-Encoding: chunked\r\n\r\n")
                for chunk in req.body:
                    parts.append(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            else:
                parts.append(b"Content-Length: %d\r\n\r\n" % (req.content_length or 0))
                parts.extend(req.body)
            data = b"".join(parts)
            self.streaming_body = True
            conn.deadline = loop_time + self.service.write_timeout
        if self.streaming_body:
            req.body = []  # a buffered body is kept for retries; a streamed one is gone
        self.t_sent = loop_time
        self.bytes_sent_upstream = True
        conn.send(self, data, req.method == "HEAD")
        if self.streaming_body and req.expect_continue:
            req.expect_continue = False
            self.client_write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def build_head(self) -> bytes:
        """The upstream request head, without the final blank line and body framing."""
        req = self.req
        route = self.route
        match = req.match
        assert match is not None
        ctx = self.ctx
        if ctx is not None and ctx.upstream_path is not None:
            path = ctx.upstream_path
        else:
            build_path = route.upstream_path
            path = build_path(req.path, match) if build_path is not None else req.path
        if req.conn_tokens is not None:
            block, xff = self._filtered_headers()
        elif ctx is None:
            # The server already filtered and serialised the headers (no plugin changed them).
            block = req.forwarded_block
            xff = req.xff
        else:
            appended = self._appended_headers()
            if appended is None:
                block, xff = self._filtered_headers()
            else:
                block = req.forwarded_block + appended
                xff = req.xff
        client = self.client
        if xff:
            forwarding = b"X-Forwarded-For: " + xff + b", " + client.ip_bytes + b"\r\n" + client.conn_headers
        else:
            forwarding = client.conn_headers_xff
        host = req.host
        if route.preserve_host and host is not None:
            host_line = b"Host: " + host + b"\r\n"
        else:
            assert self.endpoint is not None
            host_line = self.service.host_header(self.endpoint)
        return b"%s %s%s HTTP/1.1\r\n%s%s%s%sX-Forwarded-Path: %s\r\n%s" % (
            req.method.encode(),
            path.encode(),
            req.query,
            block,
            host_line,
            forwarding,
            b"" if host is None else _forwarded_host_line(host),
            req.raw_path.encode(),
            _VIA_REQUEST
            if not route.strip_path or match.strip_len <= 1
            # Kong's X-Forwarded-Prefix: the part of the path the route stripped.
            else b"X-Forwarded-Prefix: " + match.matched_path.encode() + b"\r\n" + _VIA_REQUEST,
        )

    def _appended_headers(self) -> bytes | None:
        """The lines of headers plugins appended to the parsed ones, when that is all they did
        and all the new ones are forwarded as they are; None otherwise (walk them all again).

        Removing or editing a header changes the list's first entries (plugins build a new list
        to remove one), which the comparison with the parsed copy sees; it is C-level and much
        cheaper than classifying every header again. (Not an element-wise `is` loop: compiled,
        each `tuple[bytes, bytes]` read from a list is a new box, never the same object.)
        """
        req = self.req
        parsed = req.parsed_headers
        headers = req.headers
        if parsed is None:
            return None
        count = len(parsed)
        if len(headers) < count or headers[:count] != parsed:
            return None
        if len(headers) == count:
            return b""
        parts: list[bytes] = []
        for name, value in headers[count:]:
            if classify_request_header(name) != FORWARDED:
                return None
            parts.append(name)
            parts.append(b": ")
            parts.append(value)
            parts.append(b"\r\n")
        return b"".join(parts)

    def _filtered_headers(self) -> tuple[bytes, bytes | None]:
        """The request headers to forward, walked again: a plugin may have changed them, or the
        client's `Connection` header names headers to drop. Also the client's X-Forwarded-For."""
        req = self.req
        tokens = req.conn_tokens
        parts: list[bytes] = []
        xff: bytes | None = None
        for name, value in req.headers:
            kind = classify_request_header(name)
            if kind != FORWARDED:
                if kind == FORWARDED_FOR:
                    xff = value if xff is None else xff + b", " + value
                continue
            if tokens is not None and name.lower() in tokens:
                continue
            parts.append(name)
            parts.append(b": ")
            parts.append(value)
            parts.append(b"\r\n")
        return b"".join(parts), xff

    def send_body(self, chunk: bytes) -> None:
        """A body chunk arrived from the client while streaming."""
        conn = self.upstream
        if conn is None:
            self.req.body.append(chunk)
            return
        conn.deadline = self.runtime.clock() + self.service.write_timeout
        conn.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if self.req.chunked else chunk)

    def body_complete(self) -> None:
        """The client finished its streamed body."""
        conn = self.upstream
        if conn is None:
            return
        if self.req.chunked:
            conn.write(b"0\r\n\r\n")
        conn.deadline = self.runtime.clock() + self.service.read_timeout

    def abort_request(self) -> None:
        """The client's streamed body turned out malformed: the upstream must not act on it."""
        conn = self.upstream
        self.upstream = None
        if conn is not None:
            conn.abort()
        if self.response_started:
            self.finish(keep_alive=False, upstream_reusable=False)
            self.client.close()
        else:
            self.client_keep_alive = False
            self.fail(400, None)

    # ------------------------------------------------------------------ the response
    def response_head(self, status: int, head: bytes, upstream_keep_alive: bool) -> None:
        """The upstream's head arrived (`head`: its wire bytes, status line to blank line)."""
        service = self.service
        if service.health is not None or service.breakers is not None:
            self.note_status(status)
        if 502 <= status <= 504 and self.retry_status():
            return
        now = self.runtime.clock()
        self.t_first_byte = now
        self.status = status
        self.response_started = True
        conn = self.upstream
        if conn is not None:
            conn.deadline = now + self.service.read_timeout
        ctx = self.ctx
        if ctx is not None and (ctx.chain.response or ctx.chain.body):
            response_head = self._run_response_phase(ctx, status, None, head)
            if response_head.hold:
                self.head_held = True  # written once the body filters produce bytes (release_head)
                # write_head learns the framing only then: a body with neither a length nor
                # chunking ends when the upstream closes, which upstream_lost must know now.
                framing = (b"content-length", b"transfer-encoding")
                self.close_delimited = not any(n.lower() in framing for n, _ in header_pairs(head))
                if response_head.status == status:
                    response_head.reason = reason_phrase(head)
                return
            if not response_head.parsed and response_head.status == status:
                # The plugins only added headers: splice those into the upstream's own head.
                self.write_wire_head(status, head, response_head.added, response_head.lowered_wire())
                return
            reason = reason_phrase(head) if response_head.status == status else b""
            self.write_head(response_head.status, reason, response_head.headers)
            return
        self.write_wire_head(status, head)

    def write_wire_head(
        self,
        status: int,
        head: bytes,
        extra: list[tuple[bytes, bytes]] | None = None,
        lowered: bytes | None = None,
    ) -> None:
        """Forward the upstream's head as the bytes it came in, with our edits spliced in.

        One regex search over the lowercased head (which usually finds nothing) and two `find`s
        decide: only a single plain `Connection: keep-alive|close` is cut out here (and
        `Content-Length` noted); a head with any other header the proxy drops or rewrites goes
        through `write_head`. (A `finditer` over every header of note cost three times as much.)
        `extra`: headers response-phase plugins appended, written after the upstream's;
        `lowered`: `head.lower()` when the caller already has it.
        """
        if lowered is None:
            lowered = head.lower()
        if _RESPONSE_HEADERS_TO_EDIT.search(lowered) is None:
            has_length = lowered.find(b"\r\ncontent-length:") >= 0
            at = lowered.find(b"\r\nconnection:")
            if at < 0:
                self._splice_head(status, head, has_length, 0, 0, extra)
                return
            cut_to = lowered.find(b"\r\n", at + 2) + 2
            value = lowered[at + 13 : cut_to - 2].strip(b" \t")
            if value in _PLAIN_CONNECTION_VALUES and lowered.find(b"\r\nconnection:", cut_to - 2) < 0:
                self._splice_head(status, head, has_length, at + 2, cut_to, extra)
                return
        pairs = header_pairs(head)
        self.write_head(status, reason_phrase(head), pairs + extra if extra else pairs)

    def _splice_head(
        self,
        status: int,
        head: bytes,
        has_length: bool,
        cut_from: int,
        cut_to: int,
        extra: list[tuple[bytes, bytes]] | None,
    ) -> None:
        out = self.out
        start = head.find(b"\r\n") + 2
        end = len(head) - 2  # keep the last header's CRLF, not the blank line
        if head.startswith(b"HTTP/1.1 "):
            start = 0
        else:
            out.append(status_line(status, reason_phrase(head)))
        if cut_to:
            out.append(head[start:cut_from])
            start = cut_to
        if start < end:
            out.append(head[start:end])
        if extra:
            parts: list[bytes] = []
            for name, value in extra:
                parts.append(name)
                parts.append(b": ")
                parts.append(value)
                parts.append(b"\r\n")
            out.append(b"".join(parts))
        req = self.req
        keep_alive = self.client_keep_alive and not self.client.closing
        if not has_length and not (req.method == "HEAD" or status in _NO_BODY_STATUSES or status < 200):
            if req.version == "1.1":
                self.rechunk = True
                out.append(b"Transfer-Encoding: chunked\r\n")
            else:
                keep_alive = False
            self.close_delimited = True
        self.client_keep_alive = keep_alive
        self.write_own_headers(keep_alive, None)

    def release_head(self) -> None:
        """Write the head a response-phase plugin held (`ResponseHead.hold`), as it is now."""
        self.head_held = False
        ctx = self.ctx
        assert ctx is not None and ctx.response_head is not None
        head = ctx.response_head
        self.write_head(head.status, head.reason if head.status == self.status else b"", head.headers)

    def write_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        """Write a head given as pairs (after response-phase plugins, or an unusual upstream head)."""
        req = self.req
        ctx = self.ctx
        out = self.out
        first_header = len(out) + 1
        out.append(status_line(status, reason))
        has_length = False
        chunked = False
        via: bytes | None = None
        tokens: frozenset[bytes] | None = None
        skip = _RESPONSE_SKIP
        for name, value in headers:
            lname = name.lower()
            if lname in skip:
                if lname == b"transfer-encoding":
                    chunked = True
                elif lname == b"via":
                    via = value
                elif lname == b"connection" and value.lower() not in _PLAIN_CONNECTION_VALUES:
                    tokens = frozenset(t.strip().lower() for t in value.split(b","))
                continue
            if lname == b"content-length":
                has_length = True
            out.append(name + b": " + value + b"\r\n")
        if tokens is not None:
            named = tokens - _NOT_DROPPABLE
            if named:
                # In place: `out` is the list the rest of the head is appended to.
                out[first_header:] = _without_named(out[first_header:], named)
        bodyless = req.method == "HEAD" or status in _NO_BODY_STATUSES or status < 200
        if has_length and not bodyless and ctx is not None and ctx.chain.body:
            # Body filters may change the length: the length header was dropped; re-frame.
            has_length = False
        keep_alive = self.client_keep_alive and not self.client.closing
        if not bodyless and not has_length:
            if req.version == "1.1":
                self.rechunk = True
                out.append(b"Transfer-Encoding: chunked\r\n")
            else:
                keep_alive = False
            self.close_delimited = not chunked
        self.client_keep_alive = keep_alive
        self.write_own_headers(keep_alive, via)

    def write_own_headers(self, keep_alive: bool, via: bytes | None) -> None:
        """The headers the gateway adds to every proxied response, and the blank line."""
        req = self.req
        t_sent = self.t_sent
        via_line = _VIA_RESPONSE if via is None else f"Via: {via.decode('latin-1')}, {_VIA_TEXT}\r\n"
        self.out.append(
            (
                f"{via_line}"
                f"X-Forecourt-Upstream-Latency: {int((self.t_first_byte - t_sent) * 1000)}\r\n"
                f"X-Forecourt-Proxy-Latency: {int((t_sent - req.start) * 1000)}\r\n"
                f"{self.runtime.request_id_name}: {req.request_id}\r\n"
                f"{_END_CLOSE if not keep_alive else _END_KEEP_ALIVE_10 if req.version == '1.0' else _END}"
            ).encode("latin-1")
        )

    @staticmethod
    def _run_response_phase(
        ctx: Context, status: int, headers: list[tuple[bytes, bytes]] | None, wire: bytes | None = None
    ) -> ResponseHead:
        """Let response-phase plugins see and change the head (Kong's header_filter): given as
        pairs, or as an upstream's wire bytes (parsed only if a plugin needs the list)."""
        head = ctx.start_response(status, headers, wire)
        for plugin in ctx.chain.response:
            plugin.response(ctx, head)
        if ctx.chain.body:
            head.remove(b"content-length")  # body filters may change the length: re-framed
        return head

    def response_body(self, chunk: bytes) -> None:
        self.response_bytes += len(chunk)
        ctx = self.ctx
        if ctx is not None and ctx.chain.body:
            chunk = self._filter_body(ctx, chunk, last=False)
            if not chunk:
                return
            if self.head_held:
                self.release_head()
        if self.rechunk:
            self.out.append(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        else:
            self.out.append(chunk)

    def _filter_body(self, ctx: Context, chunk: bytes, *, last: bool) -> bytes:
        for plugin in ctx.chain.body:
            chunk = plugin.body(ctx, chunk, last)
        return chunk

    def response_done(self, upstream_keep_alive: bool) -> None:
        if not self.response_started:
            return  # the end of a 5xx held back for a retry (the connection was dropped)
        ctx = self.ctx
        if ctx is not None and ctx.chain.body and self.req.method != "HEAD":
            tail = self._filter_body(ctx, b"", last=True)
            if self.head_held:
                self.release_head()
            if tail:
                self.out.append(b"%x\r\n%s\r\n" % (len(tail), tail) if self.rechunk else tail)
        if self.head_held:
            self.release_head()
        if self.rechunk:
            self.out.append(b"0\r\n\r\n")
        self.flush()
        self.finish(
            keep_alive=self.client_keep_alive,
            upstream_reusable=upstream_keep_alive and not self.streaming_body_pending(),
        )

    def streaming_body_pending(self) -> bool:
        return self.streaming_body and not self.req.complete

    def flush(self) -> None:
        out = self.out
        if out:
            data = b"".join(out) if len(out) > 1 else out[0]
            self.out = []
            self.client_write(data)

    def client_write(self, data: bytes) -> None:
        transport = self.client.transport
        if transport is not None and not self.client.closing:
            transport.write(data)

    def pause_upstream_reading(self) -> None:
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_upstream_reading(self) -> None:
        if self.upstream is not None:
            self.upstream.resume_reading()

    # ------------------------------------------------------------------ failures
    def backend_outcomes(self) -> dict[str, dict[str, Any]] | None:
        """Per-backend outcomes for the access log: an aggregate's; a plain exchange has none."""
        return None

    def pause_request_body(self) -> None:
        self.client.pause_request_body()

    def resume_request_body(self) -> None:
        self.client.resume_request_body()

    def upstream_lost(self, exc: Exception | None) -> None:
        """The upstream connection closed while this exchange was using it."""
        conn = self.upstream
        self.upstream = None
        if self.finished:
            return
        if self.response_started:
            if self.close_delimited:
                # End of a close-delimited body is the end of the response.
                self.response_done(False)
            else:
                self.flush()
                self.finish(keep_alive=False, upstream_reusable=False)
                self.client.close()
            return
        if conn is None or conn.requests <= 1:
            # A reused keep-alive connection the upstream closed as it was reused says nothing
            # about the target's health; a fresh one reset before answering does.
            self.note_failure(Outcome.TCP_FAILURE)
        self.retry_or_fail(502, None, sent=True)

    def upstream_garbage(self) -> None:
        conn = self.upstream
        self.upstream = None
        if conn is not None:
            conn.abort()
        if self.response_started:
            self.flush()
            self.finish(keep_alive=False, upstream_reusable=False)
            self.client.close()
            return
        self.out = []
        self.note_failure(Outcome.TCP_FAILURE)
        self.retry_or_fail(502, None, sent=True)

    def upstream_timeout(self) -> None:
        conn = self.upstream
        self.upstream = None
        if conn is not None:
            conn.abort()
        self.note_failure(Outcome.TIMEOUT)
        if self.response_started:
            self.flush()
            self.finish(keep_alive=False, upstream_reusable=False)
            self.client.close()
            return
        self.retry_or_fail(504, "The upstream server is timed out", sent=True)

    def retry_or_fail(self, status: int, message: str | None, *, sent: bool) -> None:
        """Retry on another target when that is safe, otherwise answer `status`.

        Safe means: retries left, nothing of the response reached the client, the request body
        is still at hand, and either no byte reached the upstream or the method is idempotent.
        A retry also needs a retry-budget token. Without one, a failover to an untried target
        queues for one briefly (`RetryBudget.wait`); anything else answers `status` at once.
        """
        req = self.req
        self.upstream = None
        if not (
            self.attempts <= self.service.retries
            and not self.response_started
            and not self.streaming_body
            and (not sent or req.method in IDEMPOTENT_METHODS)
        ):
            self.fail(status, message)
            return
        if self.retry_token:
            self.retry_later()
            return
        budget = self.service.retry_budget
        if budget.try_acquire(self.active_requests()):
            self.retry_token = True
            self.retry_later()
        elif self.fresh_target_available():
            # A failover (another target is there): worth a short wait for a token.
            self.pending = budget.wait(
                self.runtime.loop, self.budget_granted, lambda: self.fail(status, message)
            )
        else:
            budget.denied += 1
            self.fail(status, message)

    def retry_status(self) -> bool:
        """Hold back an upstream's 502/503/504 and retry instead? Only for an idempotent request with
        retries left, a different target to go to and a budget token at hand."""
        service = self.service
        if (
            self.attempts > service.retries
            or self.streaming_body
            or self.req.method not in IDEMPOTENT_METHODS
            or not self.fresh_target_available()
        ):
            return False
        if not self.retry_token:
            if not service.retry_budget.try_acquire(self.active_requests()):
                return False
            self.retry_token = True
        conn = self.upstream
        self.upstream = None
        if conn is not None:
            conn.abort()  # the rest of this answer is not wanted
        self.runtime.note_retry(self)
        self.pending = self.runtime.loop.call_soon(self.start)  # out of the parser's callback first
        return True

    def budget_granted(self) -> None:
        """A retry-budget token came free for this queued retry."""
        self.pending = None
        self.retry_token = True
        if self.finished:
            self.retry_token = False
            self.service.retry_budget.release()
            return
        self.retry_later()

    def retry_later(self) -> None:
        """Retry now on a fresh target, or after a jittered backoff when only tried ones are left."""
        self.runtime.note_retry(self)
        if self.fresh_target_available():
            self.start()
            return
        delay = self.service.retry_budget.policy.backoff(self.attempts)
        self.pending = self.runtime.loop.call_later(delay, self.start)

    def fresh_target_available(self) -> bool:
        """Is there a usable target this exchange has not tried yet?"""
        tried = self.tried
        breakers = self.service.breakers
        for ep in self.service.targets.balancer.endpoints:
            if (
                ep.healthy
                and ep.weight > 0
                and ep not in tried
                and (breakers is None or not breakers.is_open(ep))
            ):
                return True
        return False

    def active_requests(self) -> int:
        """Requests in flight to this service's upstream (what the retry budget is a share of)."""
        return sum(ep.active for ep in self.service.targets.balancer.endpoints)

    def note_failure(self, outcome: Outcome) -> None:
        """The current attempt failed without an HTTP answer: tell health checks and the breaker."""
        endpoint = self.endpoint
        service = self.service
        if endpoint is None:
            return
        if service.health is not None:
            service.health.report(endpoint, outcome)
        if service.breakers is not None:
            service.breakers.record(endpoint, False)

    def note_status(self, status: int) -> None:
        """The current attempt got an answer: tell passive health checks and the breaker."""
        endpoint = self.endpoint
        service = self.service
        if endpoint is None:
            return
        if service.health is not None:
            service.health.report_status(endpoint, status)
        if service.breakers is not None:
            service.breakers.record_status(endpoint, status)

    def respond(self, response: Response) -> None:
        """Answer with a response a plugin made in its access phase (no upstream involved)."""
        if self.finished:
            return
        req = self.req
        self.t_sent = self.runtime.clock()
        status = response.status
        body = response.render_body(req.request_id)
        headers = list(response.headers)
        if response.message is not None and not response.has_header(b"content-type"):
            headers.insert(0, (b"Content-Type", b"application/json; charset=utf-8"))
        ctx = self.ctx
        reason = b""
        if ctx is not None and (ctx.chain.response or ctx.chain.body):
            response_head = self._run_response_phase(ctx, status, list(headers))
            headers, status = response_head.headers, response_head.status
            if ctx.chain.body and req.method != "HEAD":
                body = self._filter_body(ctx, body, last=False) + self._filter_body(ctx, b"", last=True)
                if ctx.response_head is not None:
                    headers = ctx.response_head.headers  # body filters may have changed the head
        self.status = status
        self.response_started = True
        keep_alive = self.client_keep_alive and not self.client.closing
        if not req.complete:
            keep_alive = False  # the unread body makes the connection unusable
        self.client_keep_alive = keep_alive
        parts = [status_line(status, reason)]
        for name, value in headers:
            if name.lower() != b"content-length":
                parts.append(name + b": " + value + b"\r\n")
        parts.append(b"Content-Length: %d\r\n" % len(body))
        parts.append(self.runtime.request_id_header + b": " + req.request_id.encode() + b"\r\n")
        parts.append(SERVER_HEADER)
        parts.append(b"\r\n" if keep_alive else b"Connection: close\r\n\r\n")
        if req.method != "HEAD":
            parts.append(body)
        self.response_bytes = len(body)
        self.client_write(b"".join(parts))
        self.finish(keep_alive=keep_alive, upstream_reusable=False)

    def fail(self, status: int, message: str | None, *, extra_headers: bytes = b"") -> None:
        """Answer with a gateway-made error (nothing of the upstream's response was sent)."""
        if self.finished:
            return
        ctx = self.ctx
        fallback = ctx.shared.get("error_fallback") if ctx is not None else None
        if fallback is not None:
            # A plugin may answer instead (proxy-cache serving a stale entry: stale-if-error).
            answer = fallback(status)
            if answer is not None:
                self.respond(answer)
                return
        self.status = status
        req = self.req
        if self.streaming_body and not req.complete:
            self.client_keep_alive = False
        data = error_response(
            status,
            req.request_id,
            message,
            close=not self.client_keep_alive,
            head_only=req.method == "HEAD",
            request_id_header=self.runtime.request_id_header,
            extra_headers=extra_headers,
        )
        self.client_write(data)
        self.finish(keep_alive=self.client_keep_alive, upstream_reusable=False)

    def client_gone(self) -> None:
        """The client closed its connection: stop the upstream side too."""
        if self.finished:
            return
        if not self.status or not self.response_started:
            self.status = 499
        if self.access_task is not None:
            self.access_task.cancel()
            self.access_task = None
        conn = self.upstream
        self.upstream = None
        if conn is not None:
            conn.abort()
        self.finish(keep_alive=False, upstream_reusable=False, notify_client=False)

    def finish(self, *, keep_alive: bool, upstream_reusable: bool, notify_client: bool = True) -> None:
        if self.finished:
            return
        self.finished = True
        if self.pending is not None:
            self.pending.cancel()
            self.pending = None
        if self.retry_token:
            self.retry_token = False
            self.service.retry_budget.release()
        self.release_endpoint()
        conn = self.upstream
        self.upstream = None
        if conn is not None:
            conn.deadline = 0.0
            if upstream_reusable:
                self.runtime.pool.release(conn)
            else:
                conn.close()
        self.runtime.access_log.log_exchange(self)
        ctx = self.ctx
        if ctx is not None:
            for plugin in ctx.chain.log:
                plugin.log(ctx)
            # Context and exchange point at each other: break the cycle, or every plugin request
            # (its context, exchange, request, header lists) waits for the cyclic GC to be freed.
            ctx.exchange = None
        if notify_client:
            self.client.exchange_done(keep_alive)


_FORWARDED_HOST_LINES: dict[bytes, bytes] = {}


def _forwarded_host_line(host: bytes) -> bytes:
    """`X-Forwarded-Host: <host without port>` for a Host header value, remembered (bounded)."""
    line = _FORWARDED_HOST_LINES.get(host)
    if line is None:
        name = host
        colon = host.rfind(b":")
        if colon > 0 and host[colon - 1 : colon] != b"]" and b"]" not in host[colon:]:
            name = host[:colon]
        line = b"X-Forwarded-Host: " + name + b"\r\n"
        if len(_FORWARDED_HOST_LINES) < 4096:
            _FORWARDED_HOST_LINES[host] = line
    return line


def _without_named(lines: list[bytes], names: frozenset[bytes]) -> list[bytes]:
    """Header lines without those of the headers a `Connection` header named."""
    return [line for line in lines if line.split(b":", 1)[0].strip().lower() not in names]
