"""The runtime plan: an immutable, precompiled view of one config snapshot.

Everything the per-request path needs is computed here once per load (header blocks as bytes,
timeouts in seconds, balancers, the router), so a reload builds a new `Plan` beside the old one
and swaps it in one assignment; requests in flight keep the plan they started with.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from forecourt.upstream.retry import RetryBudget

if TYPE_CHECKING:
    from forecourt.config import GatewayConfig, Listen
    from forecourt.pipeline import ConsumerIndex, Plugin, PluginChain
    from forecourt.proxy.aggregate_plan import AggregatePlan
    from forecourt.proxy.hashing import HashKeyFn
    from forecourt.routing import Router, RouteSpec, UpstreamPathBuilder
    from forecourt.upstream import Balancer, CircuitBreakers, Endpoint, HealthChecker


class TargetSource(Protocol):
    """Where a service's endpoints come from: an upstream entity, or the service's own host."""

    @property
    def balancer(self) -> Balancer: ...

    def start(self) -> None: ...

    async def ready(self) -> None: ...

    async def close(self) -> None: ...


@dataclass(slots=True, eq=False)
class ServicePlan:
    """A service, compiled for forwarding."""

    name: str
    protocol: str
    host: str
    port: int
    path: str | None
    retries: int
    connect_timeout: float
    read_timeout: float
    write_timeout: float
    targets: TargetSource
    upstream_name: str | None
    fixed_host_header: bytes
    ssl_context: ssl.SSLContext | None = None
    server_hostname: str | None = None
    hash_key: HashKeyFn | None = None
    # Resilience (upstream/): None when not configured, so the proxy does no work for them.
    health: HealthChecker | None = None
    breakers: CircuitBreakers | None = None
    retry_budget: RetryBudget = field(default_factory=RetryBudget)
    _host_headers: dict[str, bytes] = field(default_factory=dict)

    def host_header(self, endpoint: Endpoint) -> bytes:
        """The `Host: ...` line for a request to `endpoint` (Kong: the target's host, unless the
        upstream sets `host_header`), cached per endpoint so it is built once."""
        line = self._host_headers.get(endpoint.key)
        if line is None:
            from forecourt.plan.build import host_header_value

            value = self.fixed_host_header or host_header_value(endpoint.host, endpoint.port, self.protocol)
            line = b"Host: " + value + b"\r\n"
            if len(self._host_headers) < 4096:
                self._host_headers[endpoint.key] = line
        return line


@dataclass(slots=True, eq=False)
class RoutePlan:
    """A route, compiled: its service (or aggregate) and the flags the proxy reads per request."""

    name: str
    service: ServicePlan | None
    spec: RouteSpec
    strip_path: bool = True
    preserve_host: bool = False
    request_buffering: bool = True
    response_buffering: bool = True
    path_handling: str = "v0"
    protocols: tuple[str, ...] = ("http", "https")
    upstream_path: UpstreamPathBuilder | None = None
    https_redirect_status_code: int = 426
    chain: PluginChain | None = None
    # An aggregate route fans out to its backends; its `service` is then a stand-in, never called.
    aggregate: AggregatePlan | None = None


@dataclass(slots=True, eq=False)
class Plan:
    """One gateway's compiled config."""

    router: Router
    routes: dict[str, RoutePlan]
    services: dict[str, ServicePlan]
    listen: list[Listen]
    config: GatewayConfig
    upstreams: dict[str, TargetSource] = field(default_factory=dict)
    server_ssl: ssl.SSLContext | None = None
    plugins: list[Plugin[Any]] = field(default_factory=list)
    consumers: ConsumerIndex | None = None
    health: dict[str, HealthChecker] = field(default_factory=dict)
