"""`prometheus`: Kong's metrics per service, route, status and consumer, scraped at the admin `/metrics`.

Config and metric names are Kong 3.x's (`kong_http_requests_total`, `kong_request_latency_ms`, ...), so
dashboards and alerts built for Kong keep working; every per-request series carries one more label,
`gateway` (the config file's stem), because several gateways may run in one node. As in Kong, each
group of metrics is off until its flag is on (`status_code_metrics`, `latency_metrics`,
`bandwidth_metrics`, `upstream_health_metrics`), and `per_consumer` fills the `consumer` label.

Forecourt adds `forecourt_rate_limited_total`: requests the `rate-limiting` plugin rejected (429 by
default, or its `error_code`). That plugin marks its rejections with `ctx.shared["rate_limited"] = True`
(`RATE_LIMITED` below); counting the marker rather than every 429 keeps an upstream's own 429s out.

Cost: the log phase looks up one pre-bound set of series per (route, status, source, consumer) and
adds to their slots; no label formatting, locking or I/O per request (observability/metrics.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from forecourt.config.fields import Bool
from forecourt.observability.metrics import REGISTRY, CounterValue, HistogramValue
from forecourt.pipeline import Context, Plugin, PluginConfig, PluginEnv, PluginScope

if TYPE_CHECKING:
    from forecourt.plan import RoutePlan

__all__ = ["RATE_LIMITED", "PrometheusConfig", "PrometheusPlugin"]

RATE_LIMITED = "rate_limited"
"""`ctx.shared` key the rate-limiting plugin sets (to True) on the requests it rejects."""

# Kong 3.x's buckets, in milliseconds.
KONG_LATENCY_BUCKETS = (1, 2, 5, 7, 10, 15, 20, 30, 50, 75, 100, 200, 500, 750, 1000)
UPSTREAM_LATENCY_BUCKETS = (25, 50, 80, 100, 250, 400, 700, 1000, 2000, 5000, 10000, 30000, 60000)

REQUESTS = REGISTRY.counter(
    "kong_http_requests_total",
    "HTTP status codes per consumer/service/route in Kong",
    ("service", "route", "code", "source", "consumer", "gateway"),
)
KONG_LATENCY = REGISTRY.histogram(
    "kong_kong_latency_ms",
    "Latency added by Kong and enabled plugins for each service/route in Kong",
    ("service", "route", "gateway"),
    KONG_LATENCY_BUCKETS,
)
UPSTREAM_LATENCY = REGISTRY.histogram(
    "kong_upstream_latency_ms",
    "Latency added by upstream response for each service/route in Kong",
    ("service", "route", "gateway"),
    UPSTREAM_LATENCY_BUCKETS,
)
REQUEST_LATENCY = REGISTRY.histogram(
    "kong_request_latency_ms",
    "Total latency incurred during requests for each service/route in Kong",
    ("service", "route", "gateway"),
    UPSTREAM_LATENCY_BUCKETS,
)
BANDWIDTH = REGISTRY.counter(
    "kong_bandwidth_bytes",
    "Total bandwidth (ingress/egress) throughput in bytes",
    ("service", "route", "direction", "consumer", "gateway"),
)
RATE_LIMITED_TOTAL = REGISTRY.counter(
    "forecourt_rate_limited_total",
    "Requests rejected with 429 by the rate-limiting plugin per service/route/consumer",
    ("service", "route", "consumer", "gateway"),
)

# Bound series per plugin instance: enough for many routes x statuses; past it, series are looked
# up per request instead of cached (a consumer label with unbounded cardinality must not grow memory
# here beyond what the registry itself holds).
_MAX_BOUND = 20_000


class PrometheusConfig(PluginConfig):
    per_consumer: Bool = Field(
        False,
        description="Fill the `consumer` label of `kong_http_requests_total` and `kong_bandwidth_bytes`.",
    )
    status_code_metrics: Bool = Field(
        False,
        description="Export `kong_http_requests_total` (and `forecourt_rate_limited_total`).",
    )
    ai_metrics: Bool = Field(False, description="Kong's AI metrics (Forecourt has no AI proxy: none).")
    latency_metrics: Bool = Field(
        False,
        description="Export the `kong_kong_latency_ms`, `kong_upstream_latency_ms`, `kong_request_latency_ms`"
        " histograms.",
    )
    bandwidth_metrics: Bool = Field(False, description="Export `kong_bandwidth_bytes`.")
    upstream_health_metrics: Bool = Field(
        False, description="Export `kong_upstream_target_health` (computed when scraped)."
    )


class _Latency:
    """The three latency histograms of one service/route."""

    __slots__ = ("kong", "request", "upstream")

    def __init__(self, service: str, route: str, gateway: str) -> None:
        self.kong: HistogramValue = KONG_LATENCY.histogram(service, route, gateway)
        self.upstream: HistogramValue = UPSTREAM_LATENCY.histogram(service, route, gateway)
        self.request: HistogramValue = REQUEST_LATENCY.histogram(service, route, gateway)


class _Bound:
    """Every series one kind of request (route, status, source, consumer) updates."""

    __slots__ = ("egress", "ingress", "latency", "limit_labels", "rate_limited", "requests")

    def __init__(
        self,
        requests: CounterValue | None,
        ingress: CounterValue | None,
        egress: CounterValue | None,
        latency: _Latency | None,
        limit_labels: tuple[str, ...] | None,
    ) -> None:
        self.requests = requests
        self.ingress = ingress
        self.egress = egress
        self.latency = latency
        # The rate-limit series is created on the first rejection, not for every route and status.
        self.limit_labels = limit_labels
        self.rate_limited: CounterValue | None = None


class PrometheusPlugin(Plugin[PrometheusConfig]):
    """Counts and times every request it applies to (log phase)."""

    name = "prometheus"
    priority = 13
    Config = PrometheusConfig

    def __init__(self, config: PrometheusConfig, scope: PluginScope, env: PluginEnv) -> None:
        super().__init__(config, scope, env)
        self._bound: dict[tuple[RoutePlan, int, bool, str], _Bound] = {}
        self._latency: dict[RoutePlan, _Latency] = {}
        self._active = config.status_code_metrics or config.latency_metrics or config.bandwidth_metrics
        self._started = False

    async def start(self) -> None:
        if self.config.upstream_health_metrics and not self._started:
            REGISTRY.enable("upstream_health")
        self._started = True

    async def close(self) -> None:
        if self.config.upstream_health_metrics and self._started:
            REGISTRY.disable("upstream_health")
        self._started = False

    def log(self, ctx: Context) -> None:
        ex = ctx.exchange
        if ex is None or not self._active:
            return
        from_service = ex.t_first_byte != 0.0
        consumer = ctx.consumer
        name = "" if consumer is None or not self.config.per_consumer else consumer.name
        key = (ctx.route, ex.status, from_service, name)
        bound = self._bound.get(key)
        if bound is None:
            bound = self._bind(ctx.route, ex.status, from_service, name)
            if len(self._bound) < _MAX_BOUND:
                self._bound[key] = bound
        if bound.requests is not None:
            bound.requests.value += 1
            if ctx.shared.get(RATE_LIMITED) and bound.limit_labels is not None:
                counter = bound.rate_limited
                if counter is None:
                    counter = bound.rate_limited = RATE_LIMITED_TOTAL.counter(*bound.limit_labels)
                counter.value += 1
        if bound.ingress is not None:
            size = ex.req.body_bytes
            if size:
                bound.ingress.value += size
            size = ex.response_bytes
            if size and bound.egress is not None:
                bound.egress.value += size
        latency = bound.latency
        if latency is not None:
            start = ex.req.start
            total = (ex.runtime.loop.time() - start) * 1000.0
            latency.request.observe(total)
            sent = ex.t_sent
            if from_service:
                latency.upstream.observe((ex.t_first_byte - sent) * 1000.0)
            latency.kong.observe((sent - start) * 1000.0 if sent else total)

    def _bind(self, route: RoutePlan, status: int, from_service: bool, consumer: str) -> _Bound:
        config = self.config
        service = route.service.name if route.service is not None else ""
        gateway = self.env.gateway
        requests = ingress = egress = None
        limit_labels = None
        latency = None
        if config.status_code_metrics:
            source = "service" if from_service else "kong"
            requests = REQUESTS.counter(service, route.name, str(status), source, consumer, gateway)
            limit_labels = (service, route.name, consumer, gateway)
        if config.bandwidth_metrics:
            ingress = BANDWIDTH.counter(service, route.name, "ingress", consumer, gateway)
            egress = BANDWIDTH.counter(service, route.name, "egress", consumer, gateway)
        if config.latency_metrics:
            latency = self._latency.get(route)
            if latency is None:
                latency = self._latency[route] = _Latency(service, route.name, gateway)
        return _Bound(requests, ingress, egress, latency, limit_labels)
