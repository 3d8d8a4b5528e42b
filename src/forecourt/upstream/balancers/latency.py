"""Lowest latency: prefer the endpoint that has been answering fastest, weighed by its load.

Each endpoint keeps a peak-sensitive moving average of its response times, fed by ``observe``:
a sample above the average replaces it at once (a target that turns slow is avoided immediately),
a sample below pulls it down by ``alpha`` (recovery is believed gradually). The pick takes the lowest

    (cost + FLOOR) * (active + 1) / weight

where ``cost`` decays toward zero with time constant ``decay`` since the last sample. The decay is
what lets a target that was slow once be tried again: without it, a sequential client would never
send it another request and its average would never improve. ``active + 1`` makes concurrent load
count, so a fast endpoint is not buried under a burst, and ``FLOOR`` keeps that factor meaningful while
no samples exist: a fresh upstream behaves as weighted least-connections until it has measurements.

A new endpoint starts at the average cost of the measured ones, so it is neither flooded (as it would
be at zero) nor starved (as it would be at a pessimistic default). Ties are broken round-robin.
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Sequence

from forecourt.upstream.balancers.base import BaseBalancer
from forecourt.upstream.endpoint import Endpoint

__all__ = ["LatencyBalancer"]

FLOOR = 0.001
"""Seconds added to every cost, so in-flight counts still separate endpoints with no samples."""


class LatencyBalancer(BaseBalancer):
    """Peak-EWMA response time times in-flight load over weight; ``hash_key`` is ignored."""

    algorithm = "latency"

    decay: float = 10.0
    """Seconds for an unrefreshed average to fall to 1/e of its value."""
    alpha: float = 0.3
    """Weight of a faster-than-average sample in the moving average."""

    _inverse_weights: list[float]
    _cost: list[float]
    _stamp: list[float]
    _index: dict[str, int]
    _next: int = 0

    def _rebuild(self, previous: Sequence[Endpoint]) -> None:
        old: dict[str, tuple[float, float]] = {}
        if previous:
            old = {ep.key: (c, t) for ep, c, t in zip(previous, self._cost, self._stamp, strict=True)}
        measured = [c for c, t in old.values() if t > 0.0]
        seed = sum(measured) / len(measured) if measured else 0.0
        now = time.monotonic()
        self._inverse_weights = [1.0 / ep.weight if ep.weight > 0 else 0.0 for ep in self._endpoints]
        self._cost = [old.get(ep.key, (seed, 0.0))[0] for ep in self._endpoints]
        # A seeded cost gets a fresh stamp, so it decays like a real measurement would.
        self._stamp = [old[ep.key][1] if ep.key in old else (now if seed else 0.0) for ep in self._endpoints]
        self._index = {ep.key: i for i, ep in enumerate(self._endpoints)}
        n = len(self._endpoints)
        self._next = self._next % n if n else 0

    def _current_cost(self, i: int, now: float) -> float:
        stamp = self._stamp[i]
        if stamp == 0.0:
            return self._cost[i]
        return self._cost[i] * math.exp((stamp - now) / self.decay)

    def observe(self, ep: Endpoint, seconds: float) -> None:
        i = self._index.get(ep.key)
        if i is None or seconds < 0.0:
            return  # the endpoint left while its request was in flight
        now = time.monotonic()
        cost = self._current_cost(i, now)
        if seconds > cost or self._stamp[i] == 0.0:
            cost = seconds
        else:
            cost += self.alpha * (seconds - cost)
        self._cost[i] = cost
        self._stamp[i] = now

    def cost(self, ep: Endpoint) -> float | None:
        """The endpoint's current decayed average in seconds (None if unknown), for metrics and tests."""
        i = self._index.get(ep.key)
        return None if i is None else self._current_cost(i, time.monotonic())

    def pick(self, hash_key: str | None = None, exclude: Collection[Endpoint] = ()) -> Endpoint | None:
        endpoints = self._endpoints
        inverse = self._inverse_weights
        n = len(endpoints)
        now = time.monotonic()
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
            score = (self._current_cost(i, now) + FLOOR) * (ep.active + 1) * inv
            if best < 0 or score < best_score:
                best = i
                best_score = score
        if best < 0:
            return None
        self._next = best + 1 if best + 1 < n else 0
        return endpoints[best]
