"""The named registry of balancing algorithms (Kong's ``upstreams[].algorithm`` values).

Config compilation calls :func:`make_balancer` once per upstream; a plugin or extension can add an
algorithm with :func:`register_balancer` before config is loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from forecourt.upstream.balancers.base import Balancer
from forecourt.upstream.balancers.consistent_hashing import ConsistentHashingBalancer
from forecourt.upstream.balancers.latency import LatencyBalancer
from forecourt.upstream.balancers.least_connections import LeastConnectionsBalancer
from forecourt.upstream.balancers.round_robin import RoundRobinBalancer
from forecourt.upstream.endpoint import Endpoint

__all__ = ["BalancerFactory", "UnknownAlgorithmError", "algorithms", "make_balancer", "register_balancer"]

BalancerFactory = Callable[[Iterable[Endpoint], int], Balancer]
"""Builds a balancer from its initial endpoints and Kong's ``slots`` (ignored where meaningless)."""


class UnknownAlgorithmError(ValueError):
    """The configured algorithm has no registered balancer."""


_FACTORIES: dict[str, BalancerFactory] = {
    "round-robin": lambda endpoints, _slots: RoundRobinBalancer(endpoints),
    "least-connections": lambda endpoints, _slots: LeastConnectionsBalancer(endpoints),
    "consistent-hashing": lambda endpoints, slots: ConsistentHashingBalancer(endpoints, slots=slots),
    "latency": lambda endpoints, _slots: LatencyBalancer(endpoints),
}


def register_balancer(name: str, factory: BalancerFactory) -> None:
    """Make ``name`` usable as an upstream ``algorithm``; replaces an existing entry of that name."""
    _FACTORIES[name] = factory


def algorithms() -> tuple[str, ...]:
    """The registered algorithm names, for config validation messages."""
    return tuple(_FACTORIES)


def make_balancer(algorithm: str, endpoints: Iterable[Endpoint] = (), *, slots: int = 10_000) -> Balancer:
    """A new balancer of the named algorithm over ``endpoints``."""
    try:
        factory = _FACTORIES[algorithm]
    except KeyError:
        known = ", ".join(_FACTORIES)
        raise UnknownAlgorithmError(f"unknown balancing algorithm {algorithm!r} (known: {known})") from None
    return factory(endpoints, slots)
