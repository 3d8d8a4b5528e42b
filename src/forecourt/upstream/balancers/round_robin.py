"""Smooth weighted round-robin (the scheme nginx uses).

Every pick adds each usable endpoint's weight to its running credit, takes the endpoint with the most
credit and charges it the total weight handed out. Over ``sum(weights)`` picks each endpoint is chosen
exactly ``weight`` times, and the choices interleave: weights 5/1/1 give ``a a b a c a a`` rather than
five ``a`` in a row, so a heavy target never sees a burst while the light ones idle.

Unhealthy, excluded and zero-weight endpoints neither gain credit nor get picked, so the remaining
ones keep their proportions among themselves. A pick is one pass over the endpoints with no
allocation; upstreams have tens of endpoints, where that pass is cheaper than a precomputed wheel that
would have to be rebuilt on every health change.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from forecourt.upstream.balancers.base import BaseBalancer
from forecourt.upstream.endpoint import Endpoint

__all__ = ["RoundRobinBalancer"]


class RoundRobinBalancer(BaseBalancer):
    """Weighted, smooth, deterministic round-robin. ``hash_key`` is ignored."""

    algorithm = "round-robin"

    _weights: list[int]
    _credit: list[int]

    def _rebuild(self, previous: Sequence[Endpoint]) -> None:
        old_credit = dict(zip((ep.key for ep in previous), self._credit, strict=True)) if previous else {}
        self._weights = [ep.weight for ep in self._endpoints]
        # An endpoint that stays keeps its credit, so a DNS refresh does not restart the cycle.
        self._credit = [old_credit.get(ep.key, 0) for ep in self._endpoints]

    def pick(self, hash_key: str | None = None, exclude: Collection[Endpoint] = ()) -> Endpoint | None:
        endpoints = self._endpoints
        weights = self._weights
        credit = self._credit
        best = -1
        best_credit = 0
        total = 0
        for i in range(len(endpoints)):
            weight = weights[i]
            if weight == 0:
                continue
            ep = endpoints[i]
            if not ep.healthy or (exclude and ep in exclude):
                continue
            c = credit[i] + weight
            credit[i] = c
            total += weight
            if best < 0 or c > best_credit:
                best = i
                best_credit = c
        if best < 0:
            return None
        credit[best] -= total
        return endpoints[best]
