"""Target and balancer health verdicts (table-driven over endpoints and health-check settings)."""

from __future__ import annotations

import pytest

from forecourt.admin.health import TargetHealth, balancer_health, checks_enabled, target_status
from forecourt.config import Healthchecks, Target, Upstream
from forecourt.upstream import Endpoint

ACTIVE_ON = Healthchecks.model_validate({"active": {"healthy": {"interval": 5}}})
PASSIVE_ON = Healthchecks.model_validate({"passive": {"unhealthy": {"http_failures": 3}}})


def target(spec: str, weight: int = 100) -> Target:
    host, _, port = spec.rpartition(":")
    return Target(target=spec, host=host, port=int(port), weight=weight, upstream="u")


@pytest.mark.parametrize(
    ("checks", "enabled"), [(Healthchecks(), False), (ACTIVE_ON, True), (PASSIVE_ON, True)]
)
def test_checks_enabled(checks: Healthchecks, enabled: bool) -> None:
    assert checks_enabled(checks) is enabled


@pytest.mark.parametrize(
    ("spec", "endpoints", "checks_on", "expected"),
    [
        ("10.0.0.1:80", [Endpoint("10.0.0.1", "10.0.0.1", 80)], False, TargetHealth.HEALTHCHECKS_OFF),
        ("10.0.0.1:80", [Endpoint("10.0.0.1", "10.0.0.1", 80)], True, TargetHealth.HEALTHY),
        (
            "10.0.0.1:80",
            [Endpoint("10.0.0.1", "10.0.0.1", 80, healthy=False)],
            True,
            TargetHealth.UNHEALTHY,
        ),
        (
            "svc.test:80",
            [Endpoint("svc.test", "10.0.0.2", 80, healthy=False), Endpoint("svc.test", "10.0.0.3", 80)],
            True,
            TargetHealth.HEALTHY,
        ),
        ("svc.test:80", [Endpoint("10.0.0.1", "10.0.0.1", 80)], False, TargetHealth.DNS_ERROR),
        ("svc.test:80", [Endpoint("svc.test", "10.0.0.2", 81)], True, TargetHealth.DNS_ERROR),
    ],
)
def test_target_status(spec: str, endpoints: list[Endpoint], checks_on: bool, expected: TargetHealth) -> None:
    assert target_status(target(spec), endpoints, checks_on).health is expected


def test_balancer_health_threshold() -> None:
    upstream = Upstream.model_validate(
        {"name": "u", "healthchecks": {**ACTIVE_ON.model_dump(), "threshold": 60}}
    )
    endpoints = [Endpoint("a", "10.0.0.1", 80), Endpoint("b", "10.0.0.2", 80, healthy=False)]
    health, weights = balancer_health(upstream, endpoints)
    assert health is TargetHealth.UNHEALTHY  # 50% available < 60% threshold
    assert weights == {"total": 200, "available": 100, "unavailable": 100}
    endpoints[1].healthy = True
    assert balancer_health(upstream, endpoints)[0] is TargetHealth.HEALTHY
    assert balancer_health(Upstream(name="u"), endpoints)[0] is TargetHealth.HEALTHCHECKS_OFF
