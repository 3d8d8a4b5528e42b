"""Target health as Kong's `/upstreams/{name}/health` reports it.

A target's health is one of Kong's four values:

- `DNS_ERROR`: a hostname target with no address (it never resolved), so it is not in the balancer;
- `HEALTHCHECKS_OFF`: the upstream configures neither active nor passive checks (Kong's default);
- `HEALTHY` / `UNHEALTHY`: checks are on and at least one / none of the target's addresses is healthy.

Each target also lists its resolved addresses (`data.addresses`), each with its own health and weight.

An upstream with `discovery` lists the targets its provider found last, and the listing carries the
provider's state (`discovery`: `ok`, or `stale` with the error and since when; see
`forecourt.discovery.DiscoveryStatus`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from forecourt.config import Healthchecks, Target, Upstream
from forecourt.upstream import Endpoint
from forecourt.upstream.dns import is_ip_literal
from forecourt.upstream.health import checks_enabled as upstream_checks_enabled

if TYPE_CHECKING:
    from forecourt.plan import Plan, ServicePlan

__all__ = [
    "TargetHealth",
    "TargetStatus",
    "balancer_health",
    "breaker_states",
    "breakers_view",
    "checks_enabled",
    "discovery_state",
    "listed_targets",
    "target_status",
]


class TargetHealth(StrEnum):
    HEALTHY = "HEALTHY"
    UNHEALTHY = "UNHEALTHY"
    HEALTHCHECKS_OFF = "HEALTHCHECKS_OFF"
    DNS_ERROR = "DNS_ERROR"


@dataclass(frozen=True, slots=True)
class TargetStatus:
    """One target's verdict and the endpoints (addresses) it resolved to."""

    health: TargetHealth
    endpoints: tuple[Endpoint, ...]


def checks_enabled(checks: Healthchecks) -> bool:
    """Kong's rule: active checks run when an interval is set, passive ones when a counter is."""
    return upstream_checks_enabled(checks)


def _owned_by(target: Target, endpoint: Endpoint) -> bool:
    if endpoint.port != target.port:
        return False
    if is_ip_literal(target.host):
        return endpoint.ip == str(ipaddress.ip_address(target.host.strip("[]")))
    return endpoint.host.lower().rstrip(".") == target.host.lower().rstrip(".")


def target_status(target: Target, endpoints: Sequence[Endpoint], checks_on: bool) -> TargetStatus:
    mine = tuple(ep for ep in endpoints if _owned_by(target, ep))
    if not mine:
        health = TargetHealth.DNS_ERROR
    elif not checks_on:
        health = TargetHealth.HEALTHCHECKS_OFF
    elif any(ep.healthy for ep in mine):
        health = TargetHealth.HEALTHY
    else:
        health = TargetHealth.UNHEALTHY
    return TargetStatus(health, mine)


def balancer_health(upstream: Upstream, endpoints: Sequence[Endpoint]) -> tuple[TargetHealth, dict[str, int]]:
    """The upstream's own verdict (`?balancer_health=1`) and its weights.

    With checks on, the upstream is UNHEALTHY when no weight is available or the available share
    falls below `healthchecks.threshold` percent.
    """
    total = sum(ep.weight for ep in endpoints)
    available = sum(ep.weight for ep in endpoints if ep.healthy)
    weights = {"total": total, "available": available, "unavailable": total - available}
    if not checks_enabled(upstream.healthchecks):
        return TargetHealth.HEALTHCHECKS_OFF, weights
    threshold = upstream.healthchecks.threshold
    healthy = available > 0 and available * 100 >= threshold * total
    return (TargetHealth.HEALTHY if healthy else TargetHealth.UNHEALTHY), weights


def listed_targets(upstream: Upstream, source: object) -> tuple[Target, ...]:
    """The targets to report: the configured ones, or the ones `discovery` found last."""
    from forecourt.discovery import DiscoveredTargets

    if upstream.discovery is None or not isinstance(source, DiscoveredTargets):
        return upstream.targets
    found: dict[tuple[str, int], Target] = {}
    for spec in source.current:
        shown = f"[{spec.host}]" if ":" in spec.host else spec.host
        found.setdefault(
            (spec.host, spec.port),
            Target(
                target=f"{shown}:{spec.port}",
                weight=spec.weight,
                host=spec.host,
                port=spec.port,
                upstream=upstream.name,
            ),
        )
    return tuple(found.values())


def discovery_state(source: object) -> dict[str, Any] | None:
    """The upstream's discovery status as JSON, or None when its targets are configured."""
    from forecourt.discovery import DiscoveredTargets

    return source.status.as_dict() if isinstance(source, DiscoveredTargets) else None


def breakers_view(service: ServicePlan) -> list[dict[str, Any]]:
    """Per target address of `service`: its circuit breaker (`GET /services/{name}/breakers`).

    Addresses whose breaker never saw a failure show as closed with empty counters.
    """
    breakers = service.breakers
    if breakers is None:
        return []
    have = dict(breakers.items())
    rows: list[dict[str, Any]] = []
    for ep in service.targets.balancer.endpoints:
        breaker = have.pop(ep.key, None)
        state: dict[str, Any] = (
            breaker.as_dict()
            if breaker is not None
            else {
                "state": "closed",
                "since": None,
                "consecutive_failures": 0,
                "window": {"requests": 0, "failures": 0},
                "retry_after": 0,
            }
        )
        rows.append({"target": ep.key, "host": ep.label, **state})
    for key, breaker in have.items():  # an address that left while its breaker was open
        rows.append({"target": key, "host": key, **breaker.as_dict()})
    return rows


def breaker_states(plans: Iterable[Plan]) -> Iterator[tuple[str, str, str]]:
    """(service, target address, state) for every target of every service with a `circuit_breaker`.

    For the prometheus plugin's scrape (e.g. a `forecourt_circuit_breaker_state` gauge with one
    series per state, 1 for the current one); `state` is `closed`, `open` or `half_open`.
    """
    seen: set[tuple[str, str]] = set()
    for plan in plans:
        for service in plan.services.values():
            for row in breakers_view(service):
                key = (service.name, row["target"])
                if key not in seen:
                    seen.add(key)
                    yield service.name, row["target"], row["state"]
