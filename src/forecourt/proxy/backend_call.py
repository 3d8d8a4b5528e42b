"""One aggregate backend request, over the gateway's own upstream connection pool.

Why the pool rather than a small client of its own: a backend is a configured service, and the
proxy already keeps warm keep-alive connections to its targets (`http.pool`), picks targets with the
service's balancer, skips targets whose breaker is open and parses answers with httptools in
`UpstreamConnection`. A `BackendCall` plugs into that machinery the way `proxy.forward.Exchange`
does (both are `http.upstream_user.UpstreamUser`s, with the same callbacks: `attach`,
`response_head`, `response_body`, `response_done`, `upstream_lost`, ...), so aggregation and
plain proxying share connections, limits and the watchdog's read timeouts, and a fan-out to three
backends costs no TCP handshake once warm.
The difference is the consumer of the answer: the body is collected (bounded by `max_body`) and
handed to an awaiting task instead of being streamed to a client.

Outcomes: `await call.run()` returns a `BackendAnswer` (any HTTP status), or raises `BackendError`
with the gateway status class of the failure: 502 (refused, reset, garbage, too large), 503 (no
target, every target's breaker open), 504 (connect or read timeout). Cancelling the awaiting task
(the backend's timeout or the aggregate's deadline) drops the connection if an answer was under way.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from forecourt.http.headers import IDEMPOTENT_METHODS
from forecourt.http.response_head import header_pairs
from forecourt.http.upstream_user import UpstreamUser
from forecourt.upstream.health import Outcome

if TYPE_CHECKING:
    from forecourt.http.upstream import UpstreamConnection
    from forecourt.plan import ServicePlan
    from forecourt.runtime import GatewayRuntime
    from forecourt.upstream import Endpoint

__all__ = ["BackendAnswer", "BackendCall", "BackendError"]

DEFAULT_MAX_BODY = 8 * 1024 * 1024


class BackendError(Exception):
    """A backend call that produced no HTTP answer; `status` is the gateway's class for it."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason


@dataclass(slots=True)
class BackendAnswer:
    """A complete HTTP answer from a backend."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    target: str
    attempts: int = 1
    latency: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)

    def header(self, name: bytes) -> bytes | None:
        lowered = name.lower()
        for n, v in self.headers:
            if n.lower() == lowered:
                return v
        return None


class BackendCall(UpstreamUser):
    """One request to one service: pick a target, send on a pooled connection, collect the answer."""

    __slots__ = (
        "body",
        "chunks",
        "delimited",
        "future",
        "hash_key",
        "head",
        "max_body",
        "method",
        "received",
        "response_headers",
        "sent",
        "status",
    )

    def __init__(
        self,
        runtime: GatewayRuntime,
        service: ServicePlan,
        method: str,
        head: bytes,
        body: bytes = b"",
        *,
        hash_key: str | None = None,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        """`head` is the request line and headers without `Host` and framing (added per target)."""
        super().__init__(runtime, service)
        self.method = method
        self.head = head
        self.body = body
        self.hash_key = hash_key
        self.max_body = max_body
        self.future: asyncio.Future[BackendAnswer] | None = None
        self.sent = False
        self.delimited = True
        self.status = 0
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.received = 0

    async def run(self) -> BackendAnswer:
        """The answer; raises `BackendError`. Cancellation aborts the call."""
        self.future = self.runtime.loop.create_future()
        self.start()
        try:
            return await self.future
        except asyncio.CancelledError:
            self.abort()
            raise

    # ------------------------------------------------------------------ target and connection
    def start(self) -> None:
        health = self.service.health
        if health is not None and health.unavailable:  # healthy weight below the threshold
            self.release_endpoint()
            self._fail(503, "no healthy target")
            return
        endpoint, skipped = self._pick()
        self.release_endpoint()
        if endpoint is None:
            self._fail(503, "circuit breaker open on every target" if skipped else "no healthy target")
            return
        balancer = self.service.targets.balancer
        balancer.acquire(endpoint)
        self.endpoint = endpoint
        self.released = False
        self.tried.append(endpoint)
        self.attempts += 1
        self.sent = False
        self.response_started = False
        conn = self.runtime.pool.take_idle(endpoint.key)
        if conn is not None:
            self.attach(conn)
        else:
            self.start_connect()

    def _pick(self) -> tuple[Endpoint | None, list[Endpoint]]:
        """A target whose breaker admits the call, preferring one not tried yet; and those skipped."""
        balancer = self.service.targets.balancer
        breakers = self.service.breakers
        key = self.hash_key
        skipped: list[Endpoint] = []
        for avoid_tried in (True, False):
            while True:
                exclude = [*self.tried, *skipped] if avoid_tried else skipped
                endpoint = balancer.pick(key, exclude) if exclude else balancer.pick(key)
                if endpoint is None:
                    break
                if breakers is None or breakers.allow(endpoint):
                    return endpoint, skipped
                skipped.append(endpoint)
            if not self.tried:
                break
        return None, skipped

    def connect_failed(self, exc: BaseException) -> None:
        if isinstance(exc, TimeoutError):
            self._note_failure(Outcome.TIMEOUT)
            self._retry_or_fail(504, "connect timeout")
        elif isinstance(exc, ssl.SSLError | ssl.CertificateError):
            self._note_failure(Outcome.TCP_FAILURE)
            self._retry_or_fail(502, "TLS handshake with the backend failed")
        else:
            self._note_failure(Outcome.TCP_FAILURE)
            self._retry_or_fail(502, f"connection failed: {_describe(exc)}")

    def attach(self, conn: UpstreamConnection) -> None:
        if self.finished:
            self.runtime.pool.release(conn)
            return
        endpoint = self.endpoint
        assert endpoint is not None
        self.upstream = conn
        body = self.body
        framing = (
            b"Content-Length: %d\r\n\r\n" % len(body)
            if body or self.method in ("POST", "PUT", "PATCH")
            else b"\r\n"
        )
        now = self.runtime.loop.time()
        conn.deadline = now + self.service.read_timeout
        self.t_sent = now
        self.sent = True
        self.chunks = []
        self.received = 0
        conn.send(
            self,
            self.head + self.service.host_header(endpoint) + framing + body,
            self.method == "HEAD",
        )

    def _note_failure(self, outcome: Outcome) -> None:
        """The attempt failed without an answer: tell passive health checks and the target's breaker,
        as the proxy does for its own attempts."""
        endpoint = self.endpoint
        if endpoint is None or self.released:
            return
        service = self.service
        if service.health is not None:
            service.health.report(endpoint, outcome)
        if service.breakers is not None:
            service.breakers.record(endpoint, False)

    def _note_status(self, status: int) -> None:
        endpoint = self.endpoint
        if endpoint is None:
            return
        service = self.service
        if service.health is not None:
            service.health.report_status(endpoint, status)
        if service.breakers is not None:
            service.breakers.record_status(endpoint, status)

    # ------------------------------------------------------------------ the answer
    def response_head(self, status: int, head: bytes, upstream_keep_alive: bool) -> None:
        now = self.runtime.loop.time()
        self.t_first_byte = now
        self.status = status
        headers = header_pairs(head)
        self.response_headers = headers
        self.response_started = True
        self._note_status(status)
        self.delimited = any(n.lower() in (b"content-length", b"transfer-encoding") for n, _ in headers)
        conn = self.upstream
        if conn is not None:
            conn.deadline = now + self.service.read_timeout

    def response_body(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received > self.max_body:
            conn = self.upstream
            self.upstream = None
            if conn is not None:
                conn.abort()
            self._fail(502, f"answer larger than {self.max_body} bytes")
            return
        self.chunks.append(chunk)
        conn = self.upstream
        if conn is not None:
            conn.deadline = self.runtime.loop.time() + self.service.read_timeout

    def response_done(self, upstream_keep_alive: bool) -> None:
        if self.finished:
            return
        self.finished = True
        conn = self.upstream
        self.upstream = None
        if conn is not None:
            conn.deadline = 0.0
            if upstream_keep_alive:
                self.runtime.pool.release(conn)
            else:
                conn.close()
        self.release_endpoint()
        endpoint = self.endpoint
        answer = BackendAnswer(
            self.status,
            self.response_headers,
            b"".join(self.chunks),
            endpoint.label if endpoint is not None else "",
            self.attempts,
            self.t_first_byte - self.t_sent if self.t_first_byte else 0.0,
        )
        future = self.future
        if future is not None and not future.done():
            future.set_result(answer)

    def flush(self) -> None:
        """Called by the connection after each packet; the answer is collected, not streamed."""

    # ------------------------------------------------------------------ failures
    def upstream_lost(self, exc: Exception | None) -> None:
        self.upstream = None
        if self.finished:
            return
        if self.response_started and not self.delimited:
            self.response_done(False)  # a close-delimited body ends with the connection
            return
        if not self.response_started:
            self._note_failure(Outcome.TCP_FAILURE)
        self._retry_or_fail(502, "connection closed before a complete answer")

    def upstream_garbage(self) -> None:
        conn = self.upstream
        self.upstream = None
        if conn is not None:
            conn.abort()
        if not self.response_started:
            self._note_failure(Outcome.TCP_FAILURE)
        self._retry_or_fail(502, "invalid HTTP answer")

    def upstream_timeout(self) -> None:
        conn = self.upstream
        self.upstream = None
        if conn is not None:
            conn.abort()
        if not self.response_started:
            self._note_failure(Outcome.TIMEOUT)
        self._retry_or_fail(504, "read timeout")

    def _retry_or_fail(self, status: int, reason: str) -> None:
        """Retry on another target when nothing of an answer arrived and resending is safe."""
        if self.finished:
            return
        if (
            self.attempts <= self.service.retries
            and not self.response_started
            and (not self.sent or self.method in IDEMPOTENT_METHODS)
        ):
            self.release_endpoint()
            self.start()
            return
        self._fail(status, reason)

    def _fail(self, status: int, reason: str) -> None:
        if self.finished:
            return
        self.finished = True
        self.release_endpoint()
        future = self.future
        if future is not None and not future.done():
            future.set_exception(BackendError(status, reason))

    def abort(self) -> None:
        """Stop now (the awaiting task was cancelled): drop a connection in use, free the target."""
        if self.finished:
            return
        self.finished = True
        conn = self.upstream
        self.upstream = None
        if conn is not None:
            conn.abort()
        if self.sent and not self.response_started:
            self._note_failure(Outcome.TIMEOUT)  # the backend's time ran out waiting for it
        self.release_endpoint()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return type(exc).__name__
