"""Upstreams: endpoints, load-balancing algorithms, DNS resolution of targets.

``UpstreamTargets`` turns an upstream's targets into endpoints (resolving hostnames and refreshing
them on TTL) and feeds them to a ``Balancer`` built by ``make_balancer(algorithm, ...)``; the proxy
then calls ``pick``/``acquire``/``release``/``observe`` on that balancer per request.
"""

from forecourt.upstream.balancers import (
    Balancer,
    BalancerFactory,
    BaseBalancer,
    ConsistentHashingBalancer,
    LatencyBalancer,
    LeastConnectionsBalancer,
    RoundRobinBalancer,
    UnknownAlgorithmError,
    algorithms,
    make_balancer,
    register_balancer,
)
from forecourt.upstream.dns import (
    DNSError,
    DNSTimeoutError,
    NameNotFoundError,
    NameserverError,
    Resolution,
    Resolver,
    SrvRecord,
)
from forecourt.upstream.endpoint import Endpoint
from forecourt.upstream.targets import Target, UpstreamTargets

__all__ = [
    "Balancer",
    "BalancerFactory",
    "BaseBalancer",
    "ConsistentHashingBalancer",
    "DNSError",
    "DNSTimeoutError",
    "Endpoint",
    "LatencyBalancer",
    "LeastConnectionsBalancer",
    "NameNotFoundError",
    "NameserverError",
    "Resolution",
    "Resolver",
    "RoundRobinBalancer",
    "SrvRecord",
    "Target",
    "UnknownAlgorithmError",
    "UpstreamTargets",
    "algorithms",
    "make_balancer",
    "register_balancer",
]
