"""Target health as Kong's `/upstreams/{name}/health` reports it.

A target's health is one of Kong's four values:

- `DNS_ERROR`: a hostname target with no address (it never resolved), so it is not in the balancer;
- `HEALTHCHECKS_OFF`: the upstream configures neither active nor passive checks (Kong's default);
- `HEALTHY` / `UNHEALTHY`: checks are on and at least one / none of the target's addresses is healthy.

Each target also lists its resolved addresses (`data.addresses`), each with its own health and weight.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from forecourt.config import Healthchecks, Target, Upstream
from forecourt.upstream import Endpoint
from forecourt.upstream.dns import is_ip_literal

__all__ = ["TargetHealth", "TargetStatus", "balancer_health", "checks_enabled", "target_status"]


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
    active = checks.active
    passive = checks.passive
    return (
        active.healthy.interval > 0
        or active.unhealthy.interval > 0
        or passive.healthy.successes > 0
        or passive.unhealthy.tcp_failures > 0
        or passive.unhealthy.timeouts > 0
        or passive.unhealthy.http_failures > 0
    )


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
