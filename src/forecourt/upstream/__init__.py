"""Upstreams: endpoints, load-balancing algorithms, DNS resolution of targets.

``UpstreamTargets`` turns an upstream's targets into endpoints (resolving hostnames and refreshing
them on TTL) and feeds them to a ``Balancer`` built by ``make_balancer(algorithm, ...)``; the proxy
then calls ``pick``/``acquire``/``release``/``observe`` on that balancer per request.

Resilience around the balancer: ``HealthChecker`` (Kong's active and passive health checks, which set
``Endpoint.healthy``), ``CircuitBreaker``/``CircuitBreakers`` (per service target) and
``RetryBudget``/``RetryPolicy`` (how many retries an upstream may take, and their backoff).
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
from forecourt.upstream.breaker import BreakerPolicy, BreakerState, CircuitBreaker, CircuitBreakers
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
from forecourt.upstream.health import EndpointHealth, HealthChecker, HttpProbe, Outcome, checks_enabled
from forecourt.upstream.retry import RetryBudget, RetryPolicy
from forecourt.upstream.targets import Target, UpstreamTargets

__all__ = [
    "Balancer",
    "BalancerFactory",
    "BaseBalancer",
    "BreakerPolicy",
    "BreakerState",
    "CircuitBreaker",
    "CircuitBreakers",
    "ConsistentHashingBalancer",
    "DNSError",
    "DNSTimeoutError",
    "Endpoint",
    "EndpointHealth",
    "HealthChecker",
    "HttpProbe",
    "LatencyBalancer",
    "LeastConnectionsBalancer",
    "NameNotFoundError",
    "NameserverError",
    "Outcome",
    "Resolution",
    "Resolver",
    "RetryBudget",
    "RetryPolicy",
    "RoundRobinBalancer",
    "SrvRecord",
    "Target",
    "UnknownAlgorithmError",
    "UpstreamTargets",
    "algorithms",
    "checks_enabled",
    "make_balancer",
    "register_balancer",
]
