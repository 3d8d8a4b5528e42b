"""Consistent hashing: a key keeps its endpoint while the endpoint set is unchanged, and a change moves
only the keys it has to.

The ring (ketama style): each endpoint owns points on a 32-bit ring, hashed from its ``key`` and a
point number with BLAKE2b, so an endpoint's points depend on nothing but its own key and weight.
Adding or removing an endpoint therefore adds or removes only its points, and only the keys that fall
on them move: when one of four equal endpoints leaves, the other three keep all their keys (about 75%
of keys stay put; the tests measure it).

Weights scale the number of points. The unit is the greatest common divisor of the positive weights,
so 100/100/100 gives each endpoint the same 1000 points as 1/1/1, and 100/50/25 gives 4000/2000/1000. (A
change that alters that divisor, e.g. removing the only weight-25 endpoint, re-scales every endpoint and
moves more keys than strictly needed; equal weights, the common case, never do.) The total is capped
so that an upstream with hundreds of endpoints still builds in milliseconds.

Kong's ``slots`` becomes a lookup table: slot ``s`` stores the ring point that owns position
``s * 2**32 / slots``, computed once per endpoint change. A pick is then ``crc32(key) % slots`` and two
list lookups, O(1) with no allocation. When the owner is unhealthy or excluded the pick walks clockwise
to the next point of a usable endpoint, so a sick endpoint's keys spread over the others rather than
all landing on its neighbour, and come back when it recovers.

``hash_key=None`` (Kong: ``hash_on: none``, or a missing header with no fallback) falls back to smooth
weighted round-robin over the same endpoints.
"""

from __future__ import annotations

import hashlib
from array import array
from bisect import bisect_left
from collections.abc import Collection, Iterable, Sequence
from math import gcd
from zlib import crc32

from forecourt.upstream.balancers.base import BaseBalancer
from forecourt.upstream.balancers.round_robin import RoundRobinBalancer
from forecourt.upstream.endpoint import Endpoint

__all__ = ["ConsistentHashingBalancer"]

_RING_SIZE = 1 << 32
POINTS_PER_UNIT = 1000
"""Ring points per weight unit: enough that four equal endpoints each own 25% +/- about 1%."""
MAX_POINTS = 64_000
"""Cap on the total number of points, bounding build time and memory for large upstreams."""


def _point(key: str, n: int) -> int:
    """The ring position of point ``n`` of the endpoint ``key``: stable across processes and runs."""
    return int.from_bytes(hashlib.blake2b(f"{key}#{n}".encode(), digest_size=4).digest(), "big")


class ConsistentHashingBalancer(BaseBalancer):
    """A weighted hash ring behind a ``slots``-entry lookup table (see the module docstring)."""

    algorithm = "consistent-hashing"

    _owners: list[Endpoint]
    _table: array[int]

    def __init__(self, endpoints: Iterable[Endpoint] = (), *, slots: int = 10_000) -> None:
        if not 10 <= slots <= 2**16:
            raise ValueError(f"slots must be between 10 and 65536 (Kong's range), got {slots}")
        self.slots = slots
        self._fallback = RoundRobinBalancer()
        super().__init__(endpoints)

    def _rebuild(self, previous: Sequence[Endpoint]) -> None:
        self._fallback.set_endpoints(self._endpoints)
        weighted = [ep for ep in self._endpoints if ep.weight > 0]
        if not weighted:
            self._owners = []
            self._table = array("I")
            return
        unit = gcd(*(ep.weight for ep in weighted))
        units = [ep.weight // unit for ep in weighted]
        per_unit = max(1, min(POINTS_PER_UNIT, MAX_POINTS // sum(units)))
        # Sorting by (position, key) keeps the ring identical whatever order the endpoints came in,
        # so every worker and every gateway node builds the same layout.
        points = sorted(
            (_point(ep.key, n), ep.key, ep)
            for ep, count in zip(weighted, units, strict=True)
            for n in range(count * per_unit)
        )
        positions = [p[0] for p in points]
        self._owners = [p[2] for p in points]
        last = len(points)
        table = array("I", bytes(4 * self.slots))
        for s in range(self.slots):
            i = bisect_left(positions, s * _RING_SIZE // self.slots)
            table[s] = i if i < last else 0
        self._table = table

    def pick(self, hash_key: str | None = None, exclude: Collection[Endpoint] = ()) -> Endpoint | None:
        if hash_key is None:
            return self._fallback.pick(None, exclude)
        owners = self._owners
        if not owners:
            return None
        i = self._table[crc32(hash_key.encode()) % self.slots]
        ep = owners[i]
        if ep.healthy and not (exclude and ep in exclude):
            return ep
        return self._walk(i, exclude)

    def _walk(self, start: int, exclude: Collection[Endpoint]) -> Endpoint | None:
        """The first usable owner clockwise from point ``start``, or None when no endpoint is usable."""
        # Checked first so that an all-unhealthy upstream costs O(endpoints), not a full ring walk.
        if not any(
            ep.weight > 0 and ep.healthy and not (exclude and ep in exclude) for ep in self._endpoints
        ):
            return None
        owners = self._owners
        n = len(owners)
        for step in range(1, n):
            ep = owners[(start + step) % n]
            if ep.healthy and not (exclude and ep in exclude):
                return ep
        return None
