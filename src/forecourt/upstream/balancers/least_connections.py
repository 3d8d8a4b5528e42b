"""Weighted least-connections.

Picks the usable endpoint with the lowest ``(active + 1) / weight`` (Kong's score): the ``+ 1`` makes
the weight count even when every endpoint is idle, so a weight-200 endpoint takes its second request
before a weight-100 endpoint takes its first.

Equal scores are broken round-robin: the scan starts just after the previous choice and keeps the
first lowest score, so an idle pool of equal endpoints still spreads its requests instead of piling
them on the first one. In-flight counts live on the endpoints (``acquire``/``release``), so they survive
``set_endpoints`` with the reused objects.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from forecourt.upstream.balancers.base import BaseBalancer
from forecourt.upstream.endpoint import Endpoint

__all__ = ["LeastConnectionsBalancer"]


class LeastConnectionsBalancer(BaseBalancer):
    """Fewest in-flight requests relative to weight; ``hash_key`` is ignored."""

    algorithm = "least-connections"

    _inverse_weights: list[float]
    _next: int = 0

    def _rebuild(self, previous: Sequence[Endpoint]) -> None:
        # Precomputed reciprocals: the scan multiplies instead of dividing. 0.0 marks "never pick".
        self._inverse_weights = [1.0 / ep.weight if ep.weight > 0 else 0.0 for ep in self._endpoints]
        if self._endpoints:
            self._next %= len(self._endpoints)
        else:
            self._next = 0

    def pick(self, hash_key: str | None = None, exclude: Collection[Endpoint] = ()) -> Endpoint | None:
        endpoints = self._endpoints
        inverse = self._inverse_weights
        n = len(endpoints)
        start = self._next
        best = -1
        best_score = 0.0
        for offset in range(n):
            i = start + offset
            if i >= n:
                i -= n
            inv = inverse[i]
            if inv == 0.0:
                continue
            ep = endpoints[i]
            if not ep.healthy or (exclude and ep in exclude):
                continue
            score = (ep.active + 1) * inv
            if best < 0 or score < best_score:
                best = i
                best_score = score
        if best < 0:
            return None
        self._next = best + 1 if best + 1 < n else 0
        return endpoints[best]
