"""What the upstream connection pool and an `UpstreamConnection` call back into.

Two kinds of request use pooled upstream connections: the proxy's `Exchange` (proxy.forward),
which streams the answer to a client, and an aggregate's `BackendCall` (proxy.backend_call), which
collects it. Both derive from this base, so the pool and the connection are typed against one
class. (The per-request modules are compiled with mypyc, where a class is a real type: a
`BackendCall` merely shaped like an `Exchange` would be refused at the first call.) The base also
holds what both do alike with the target they picked: open a connection to it and give the
balancer its slot back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from forecourt.http.upstream import UpstreamConnection
    from forecourt.plan import ServicePlan
    from forecourt.runtime import GatewayRuntime
    from forecourt.upstream import Endpoint


class UpstreamUser:
    """A request that may be given a pooled upstream connection and is told what it answers."""

    __slots__ = (
        "attempts",
        "endpoint",
        "finished",
        "released",
        "response_started",
        "runtime",
        "service",
        "t_first_byte",
        "t_sent",
        "tried",
        "upstream",
    )

    def __init__(self, runtime: GatewayRuntime, service: ServicePlan) -> None:
        self.runtime = runtime
        self.service = service
        self.finished = False  # done with (answered, failed or abandoned); never resumed by the pool
        self.response_started = False  # the upstream's head has arrived
        self.upstream: UpstreamConnection | None = None
        self.endpoint: Endpoint | None = None  # the target of the current attempt
        self.released = True  # the balancer has its slot for `endpoint` back
        self.tried: list[Endpoint] = []
        self.attempts = 0
        self.t_sent = 0.0
        self.t_first_byte = 0.0

    # The pool: a connection for this request (a warm idle one, or a fresh one to be opened).
    def attach(self, conn: UpstreamConnection) -> None:
        raise NotImplementedError

    def start_connect(self) -> None:
        """Open a connection to `endpoint`; the pool calls `attach` or `connect_failed`."""
        endpoint = self.endpoint
        assert endpoint is not None
        service = self.service
        self.runtime.pool.connect(
            self,
            endpoint.key,
            endpoint.ip,
            endpoint.port,
            service.connect_timeout,
            service.ssl_context,
            service.server_hostname or endpoint.host,
            self.attach,
            self.connect_failed,
        )

    def connect_failed(self, exc: BaseException) -> None:
        raise NotImplementedError

    def release_endpoint(self) -> None:
        """Give the balancer back the in-flight slot of the current target (least-connections),
        with the time to first byte when there was one (latency-aware balancers)."""
        endpoint = self.endpoint
        if endpoint is not None and not self.released:
            self.released = True
            balancer = self.service.targets.balancer
            balancer.release(endpoint)
            if self.t_first_byte:
                balancer.observe(endpoint, self.t_first_byte - self.t_sent)

    # The connection: the answer, in order.
    def response_head(self, status: int, head: bytes, upstream_keep_alive: bool) -> None:
        raise NotImplementedError

    def response_body(self, chunk: bytes) -> None:
        raise NotImplementedError

    def response_done(self, upstream_keep_alive: bool) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """After each packet from the upstream: write out what the packet produced."""

    # The connection: failures.
    def upstream_lost(self, exc: Exception | None) -> None:
        raise NotImplementedError

    def upstream_garbage(self) -> None:
        raise NotImplementedError

    def upstream_timeout(self) -> None:
        raise NotImplementedError

    # The connection's write buffer: pause or resume whatever feeds it a request body.
    def pause_request_body(self) -> None:
        """A request sent in one write (a backend call) has nothing to pause."""

    def resume_request_body(self) -> None:
        """See `pause_request_body`."""
