"""The balancer seam: one Protocol every algorithm implements, plus the shared bookkeeping.

The proxy drives a balancer the same way whatever the algorithm::

    ep = balancer.pick(hash_key, exclude=tried)   # None: no usable endpoint -> 503
    balancer.acquire(ep)                          # the caller, not pick(), counts in-flight requests
    try:
        ...                                       # send the request
    finally:
        balancer.release(ep)
        balancer.observe(ep, elapsed_seconds)     # only the latency balancer uses it

``acquire`` is separate from ``pick`` because a picked endpoint may be dropped before use (the
circuit breaker is open, the pool is exhausted), and counting it then would skew least-connections.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Protocol, runtime_checkable

from forecourt.upstream.endpoint import Endpoint

__all__ = ["Balancer", "BaseBalancer", "merge_endpoints"]


@runtime_checkable
class Balancer(Protocol):
    """Chooses an endpoint per request. Implementations are single-threaded (one event loop)."""

    @property
    def endpoints(self) -> Sequence[Endpoint]:
        """The current endpoints, in configuration order (health checks walk these)."""
        ...

    def pick(self, hash_key: str | None = None, exclude: Collection[Endpoint] = ()) -> Endpoint | None:
        """An endpoint that is healthy, has weight > 0 and is not in ``exclude``; None if there is none.

        ``hash_key`` only matters to consistent hashing; ``exclude`` lets a retry avoid the endpoints
        already tried.
        """
        ...

    def acquire(self, ep: Endpoint) -> None:
        """Count one more in-flight request on ``ep``."""
        ...

    def release(self, ep: Endpoint) -> None:
        """Count one in-flight request on ``ep`` as finished."""
        ...

    def observe(self, ep: Endpoint, seconds: float) -> None:
        """Report the response time of a finished request (used by ``latency``; a no-op otherwise)."""
        ...

    def set_endpoints(self, endpoints: Iterable[Endpoint]) -> None:
        """Replace the endpoint set, keeping per-endpoint state for keys that stay."""
        ...


def merge_endpoints(current: Iterable[Endpoint], incoming: Iterable[Endpoint]) -> tuple[Endpoint, ...]:
    """The new endpoint tuple, reusing the existing object for every key that is already present.

    Reuse (rather than copying counters across) matters: a request in flight across the change
    releases the object it acquired, and that must be the object the balancer still counts. The
    reused object takes the incoming weight and host. A key repeated in ``incoming`` keeps its first
    occurrence.
    """
    by_key = {ep.key: ep for ep in current}
    merged: dict[str, Endpoint] = {}
    for new in incoming:
        if new.key in merged:
            continue
        old = by_key.get(new.key)
        if old is None or old is new:
            merged[new.key] = new
            continue
        old.weight = new.weight
        if old.host != new.host:
            old.host = new.host
            old.label = new.label
        merged[old.key] = old
    return tuple(merged.values())


class BaseBalancer:
    """Endpoint storage, in-flight counting and the ``set_endpoints`` merge shared by the algorithms.

    Subclasses precompute whatever ``pick`` needs in :meth:`_rebuild`, which receives the previous
    endpoints so per-endpoint state (round-robin credit, latency averages) can be carried over by key.
    Weights are read at rebuild time: change a weight through ``set_endpoints``, not by assignment.
    """

    algorithm: str = ""

    def __init__(self, endpoints: Iterable[Endpoint] = ()) -> None:
        self._endpoints: tuple[Endpoint, ...] = ()
        self.set_endpoints(endpoints)

    @property
    def endpoints(self) -> Sequence[Endpoint]:
        return self._endpoints

    def set_endpoints(self, endpoints: Iterable[Endpoint]) -> None:
        previous = self._endpoints
        self._endpoints = merge_endpoints(previous, endpoints)
        self._rebuild(previous)

    def _rebuild(self, previous: Sequence[Endpoint]) -> None:
        """Precompute the pick structures for ``self._endpoints``; ``previous`` is the old tuple."""

    def acquire(self, ep: Endpoint) -> None:
        ep.active += 1

    def release(self, ep: Endpoint) -> None:
        # Clamped: a release for an endpoint that was replaced and re-added must not go negative.
        if ep.active > 0:
            ep.active -= 1

    def observe(self, ep: Endpoint, seconds: float) -> None:
        """Response times are ignored by default; only the latency balancer uses them."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {len(self._endpoints)} endpoints>"
