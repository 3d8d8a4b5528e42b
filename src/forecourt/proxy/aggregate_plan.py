"""An aggregate route compiled once per config load: templates parsed, shapers built, breakers made.

`compile_aggregate` turns a route's validated `aggregate` record into an `AggregatePlan`; the
fan-out (`proxy.aggregate`) then only renders templates and moves bytes. The plan also owns the
state that outlives one request: each backend's circuit breaker and its last-good-answer cache
(per worker, in memory; a reload starts them afresh).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from forecourt.config.aggregate import AGGREGATE_NAMESPACES
from forecourt.plugins.templates import Template, compile_template
from forecourt.proxy.merge import ResultShaper
from forecourt.upstream import UpstreamTargets
from forecourt.upstream.breaker import BreakerPolicy, CircuitBreaker

if TYPE_CHECKING:
    from forecourt.config import Service
    from forecourt.config.aggregate import Aggregate, AggregateBackend
    from forecourt.config.circuit_breaker import CircuitBreakerConfig
    from forecourt.plan.model import ServicePlan

__all__ = [
    "AGGREGATE_SERVICE",
    "AggregatePlan",
    "AnswerCache",
    "BackendPlan",
    "BodyTemplate",
    "compile_aggregate",
]

AGGREGATE_SERVICE = "(aggregate)"
"""The name an aggregate route's stand-in service has (in the access log and metrics): it cannot
clash with a configured service, whose names never contain parentheses."""

NO_VALUE: Any = object()
"""A backend with no static fallback body."""

BodyTemplate = Template | dict[str, "BodyTemplate"] | list["BodyTemplate"] | Any
"""A backend body: a template string, or JSON whose strings are templates (other values as they are)."""


class AnswerCache:
    """The last good answers of one backend, keyed by the request sent, least recently used out."""

    __slots__ = ("entries", "max_age", "max_entries")

    def __init__(self, max_age: float, max_entries: int) -> None:
        self.max_age = max_age
        self.max_entries = max_entries
        self.entries: OrderedDict[bytes, tuple[float, Any]] = OrderedDict()

    def put(self, key: bytes, now: float, value: Any) -> None:
        entries = self.entries
        entries[key] = (now, value)
        entries.move_to_end(key)
        while len(entries) > self.max_entries:
            entries.popitem(last=False)

    def get(self, key: bytes, now: float) -> tuple[float, Any] | None:
        """(age in seconds, value) of a fresh enough answer, or None."""
        entry = self.entries.get(key)
        if entry is None:
            return None
        stored, value = entry
        age = now - stored
        if age > self.max_age:
            del self.entries[key]
            return None
        return age, value


@dataclass(slots=True, eq=False)
class BackendPlan:
    """One backend of an aggregate, compiled."""

    name: str
    key: str
    service: ServicePlan
    method: str
    path: Template
    query: tuple[tuple[str, Template], ...]
    headers: tuple[tuple[bytes, Template], ...]
    body: BodyTemplate | None
    body_is_json: bool
    timeout: float | None
    required: bool
    shaper: ResultShaper
    depends_on: tuple[str, ...]
    fallback_body: Any = NO_VALUE
    cache: AnswerCache | None = None
    breaker: CircuitBreaker | None = None
    failure_statuses: frozenset[int] = frozenset({500, 502, 503, 504})

    @property
    def has_fallback(self) -> bool:
        return self.fallback_body is not NO_VALUE or self.cache is not None


@dataclass(slots=True, eq=False)
class AggregatePlan:
    """An aggregate route: its deadline and backends (in config order, and in a start order where
    every backend comes after those it depends on)."""

    timeout: float
    backends: tuple[BackendPlan, ...]
    order: tuple[BackendPlan, ...]
    service: ServicePlan
    by_name: dict[str, BackendPlan] = field(default_factory=dict)


def compile_aggregate(
    route_name: str,
    aggregate: Aggregate,
    services: dict[str, ServicePlan],
    service_configs: dict[str, Service],
) -> AggregatePlan:
    """The plan of a validated aggregate (its services exist; its dependencies have no cycle)."""
    backends = tuple(
        _backend(route_name, backend, services[backend.service], service_configs.get(backend.service))
        for backend in aggregate.backends
    )
    by_name = {b.name: b for b in backends}
    return AggregatePlan(
        timeout=aggregate.timeout / 1000,
        backends=backends,
        order=_start_order(backends, by_name),
        service=_stand_in_service(aggregate.timeout / 1000),
        by_name=by_name,
    )


def _backend(
    route_name: str, backend: AggregateBackend, service: ServicePlan, service_config: Service | None
) -> BackendPlan:
    fallback_body: Any = NO_VALUE
    cache = None
    if backend.fallback is not None:
        if backend.fallback.cache is not None:
            cache = AnswerCache(backend.fallback.cache.max_age, backend.fallback.cache.max_entries)
        else:
            fallback_body = backend.fallback.body
    breaker_config = backend.circuit_breaker
    if breaker_config is None and service_config is not None:
        breaker_config = service_config.circuit_breaker
    breaker = None
    statuses = frozenset({500, 502, 503, 504})
    if breaker_config is not None and breaker_config.enabled:
        policy = breaker_policy(breaker_config)
        breaker = CircuitBreaker(policy, name=f"{route_name}/{backend.name}")
        statuses = policy.failure_statuses
    body = backend.body
    return BackendPlan(
        name=backend.name,
        key=backend.result_key,
        service=service,
        method=backend.method,
        path=_compile(backend.path),
        query=tuple((name, _compile(text)) for name, text in backend.query.items()),
        headers=tuple((name.encode("latin-1"), _compile(text)) for name, text in backend.headers.items()),
        body=None if body is None else _compile_body(body),
        body_is_json=body is not None and not isinstance(body, str),
        timeout=backend.timeout / 1000 if backend.timeout is not None else None,
        required=backend.required,
        shaper=ResultShaper(backend.allow, backend.deny, backend.mapping),
        depends_on=backend.depends_on,
        fallback_body=fallback_body,
        cache=cache,
        breaker=breaker,
        failure_statuses=statuses,
    )


def breaker_policy(config: CircuitBreakerConfig) -> BreakerPolicy:
    return BreakerPolicy(
        failures=config.failures,
        failure_ratio=config.failure_ratio,
        window=config.window,
        min_requests=config.min_requests,
        open_seconds=config.open_seconds,
        half_open_requests=config.half_open_requests,
        failure_statuses=frozenset(config.http_statuses),
    )


def _compile(text: str) -> Template:
    return compile_template(text, AGGREGATE_NAMESPACES)


def _compile_body(body: Any) -> BodyTemplate:
    if isinstance(body, str):
        return _compile(body)
    if isinstance(body, dict):
        return {key: _compile_body(value) for key, value in body.items()}
    if isinstance(body, list):
        return [_compile_body(value) for value in body]
    return body


def _start_order(
    backends: tuple[BackendPlan, ...], by_name: dict[str, BackendPlan]
) -> tuple[BackendPlan, ...]:
    """Config order, except that a backend always comes after the ones it depends on."""
    placed: dict[str, BackendPlan] = {}

    def place(backend: BackendPlan) -> None:
        if backend.name in placed:
            return
        for dependency in backend.depends_on:
            place(by_name[dependency])
        placed[backend.name] = backend

    for backend in backends:
        place(backend)
    return tuple(placed.values())


def _stand_in_service(timeout: float) -> ServicePlan:
    """The `service` of an aggregate route's `RoutePlan`.

    The proxy's exchange (response writing, plugin response and log phases, the access log) expects
    a route to have a service; an aggregate's stand-in has no targets and is never forwarded to.
    """
    from forecourt.plan.model import ServicePlan

    return ServicePlan(
        name=AGGREGATE_SERVICE,
        protocol="http",
        host="",
        port=0,
        path=None,
        retries=0,
        connect_timeout=timeout,
        read_timeout=timeout,
        write_timeout=timeout,
        targets=UpstreamTargets([], name=AGGREGATE_SERVICE),
        upstream_name=None,
        fixed_host_header=b"",
    )
