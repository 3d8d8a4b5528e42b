"""Load-balancing algorithms behind the :class:`Balancer` protocol, and their named registry."""

from forecourt.upstream.balancers.base import Balancer, BaseBalancer, merge_endpoints
from forecourt.upstream.balancers.consistent_hashing import ConsistentHashingBalancer
from forecourt.upstream.balancers.latency import LatencyBalancer
from forecourt.upstream.balancers.least_connections import LeastConnectionsBalancer
from forecourt.upstream.balancers.registry import (
    BalancerFactory,
    UnknownAlgorithmError,
    algorithms,
    make_balancer,
    register_balancer,
)
from forecourt.upstream.balancers.round_robin import RoundRobinBalancer

__all__ = [
    "Balancer",
    "BalancerFactory",
    "BaseBalancer",
    "ConsistentHashingBalancer",
    "LatencyBalancer",
    "LeastConnectionsBalancer",
    "RoundRobinBalancer",
    "UnknownAlgorithmError",
    "algorithms",
    "make_balancer",
    "merge_endpoints",
    "register_balancer",
]
