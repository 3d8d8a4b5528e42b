"""What the upstream connection pool and an `UpstreamConnection` call back into.

Two kinds of request use pooled upstream connections: the proxy's `Exchange` (proxy.forward),
which streams the answer to a client, and an aggregate's `BackendCall` (proxy.backend_call), which
collects it. Both derive from this base, so the pool and the connection are typed against one
class. (The per-request modules are compiled with mypyc, where a class is a real type: a
`BackendCall` merely shaped like an `Exchange` would be refused at the first call.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from forecourt.http.upstream import UpstreamConnection


class UpstreamUser:
    """A request that may be given a pooled upstream connection and is told what it answers."""

    __slots__ = ("finished", "response_started")

    def __init__(self) -> None:
        self.finished = False  # done with (answered, failed or abandoned); never resumed by the pool
        self.response_started = False  # the upstream's head has arrived

    # The pool: a connection for this request (a warm idle one, or a fresh one to be opened).
    def attach(self, conn: UpstreamConnection) -> None:
        raise NotImplementedError

    def start_connect(self) -> None:
        raise NotImplementedError

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
