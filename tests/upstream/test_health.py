"""HealthChecker: Kong's counters and thresholds, active probes, passive outcomes, cool-down recovery."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from forecourt.config import Healthchecks
from forecourt.upstream import Endpoint, HealthChecker, HttpProbe, Outcome, RoundRobinBalancer, checks_enabled
from tests.support.net import free_port
from tests.support.upstreams import DemoUpstream, RecordingUpstream


def checks(**record: Any) -> Healthchecks:
    return Healthchecks.model_validate(record)


PASSIVE = {"passive": {"unhealthy": {"tcp_failures": 2, "timeouts": 2, "http_failures": 3}}}


def balancer(n: int = 2) -> RoundRobinBalancer:
    return RoundRobinBalancer([Endpoint("127.0.0.1", "127.0.0.1", 9000 + i) for i in range(n)])


async def wait_for(condition: Callable[[], bool], within: float = 5.0) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > within:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


def test_checks_enabled_follows_kongs_rule() -> None:
    assert not checks_enabled(checks())
    assert checks_enabled(checks(active={"healthy": {"interval": 5}}))
    assert checks_enabled(checks(passive={"unhealthy": {"timeouts": 1}}))
    assert not checks_enabled(checks(passive={"unhealthy": {"http_statuses": [500]}}))


def test_passive_thresholds_per_kind_of_failure() -> None:
    lb = balancer()
    a, b = lb.endpoints
    checker = HealthChecker("up", checks(**PASSIVE), lb)
    checker.report(a, Outcome.TCP_FAILURE)
    assert a.healthy
    checker.report(a, Outcome.TCP_FAILURE)
    assert not a.healthy
    assert checker.details(a)["reason"] == "2 TCP failures (passive)"
    for _ in range(2):
        checker.report_status(b, 500)
    checker.report_status(b, 200)  # a success clears the failure counters
    for _ in range(2):
        checker.report_status(b, 500)
    assert b.healthy
    checker.report_status(b, 404)  # in neither list: no change
    checker.report_status(b, 500)
    assert not b.healthy
    assert lb.pick() is None  # every address unhealthy: nothing to pick (the proxy answers 503)


def test_timeouts_counter_and_counters_in_details() -> None:
    lb = balancer(1)
    (a,) = lb.endpoints
    checker = HealthChecker("up", checks(**PASSIVE), lb)
    checker.report(a, Outcome.TIMEOUT)
    checker.report_status(a, 503)
    details = checker.details(a)
    assert details["counters"] == {"successes": 0, "http_failures": 1, "tcp_failures": 0, "timeouts": 1}
    checker.report(a, Outcome.TIMEOUT)
    assert not a.healthy
    assert checker.details(a)["counters"] == {
        "successes": 0,
        "http_failures": 0,
        "tcp_failures": 0,
        "timeouts": 0,
    }


def test_active_only_checker_ignores_proxied_traffic() -> None:
    lb = balancer(1)
    (a,) = lb.endpoints
    checker = HealthChecker(
        "up", checks(active={"healthy": {"interval": 1}, "unhealthy": {"tcp_failures": 1}}), lb
    )
    assert not checker.passive
    checker.report(a, Outcome.TCP_FAILURE)
    assert a.healthy
    checker.report(a, Outcome.TCP_FAILURE, active=True)
    assert not a.healthy


def test_active_probes_take_out_and_bring_back() -> None:
    results: dict[str, int | Outcome] = {}

    async def probe(ep: Endpoint) -> int | Outcome:
        return results[ep.key]

    async def scenario() -> None:
        lb = balancer()
        a, b = lb.endpoints
        record = checks(
            active={
                "healthy": {"interval": 1, "successes": 2},
                "unhealthy": {"interval": 1, "http_failures": 2, "tcp_failures": 1},
            }
        )
        checker = HealthChecker("up", record, lb, probe=probe)
        results.update({a.key: 200, b.key: 500})
        await checker.probe_round(healthy=True)
        assert a.healthy and b.healthy
        await checker.probe_round(healthy=True)
        assert a.healthy and not b.healthy
        assert checker.details(b)["reason"] == "2 HTTP failures (active)"
        results[a.key] = Outcome.TCP_FAILURE
        await checker.probe_round(healthy=True)
        assert not a.healthy
        results.update({a.key: 302, b.key: 200})
        await checker.probe_round(healthy=False)
        assert not a.healthy and not b.healthy
        await checker.probe_round(healthy=False)
        assert a.healthy and b.healthy
        assert checker.details(a)["reason"] == "2 successful probes (active)"

    asyncio.run(scenario())


def test_state_survives_set_endpoints() -> None:
    lb = balancer()
    a = lb.endpoints[0]
    checker = HealthChecker("up", checks(**PASSIVE), lb)
    checker.report(a, Outcome.TCP_FAILURE)
    checker.report(a, Outcome.TCP_FAILURE)
    lb.set_endpoints([Endpoint("127.0.0.1", "127.0.0.1", 9000), Endpoint("127.0.0.1", "127.0.0.1", 9005)])
    kept = lb.endpoints[0]
    assert kept is a and not kept.healthy
    assert checker.details(kept)["reason"] == "2 TCP failures (passive)"


def test_passive_only_target_returns_after_a_growing_cool_down() -> None:
    async def scenario() -> None:
        lb = balancer()
        a, _ = lb.endpoints
        checker = HealthChecker("up", checks(**PASSIVE), lb, cooldown=0.2, cooldown_max=10)
        checker.start()
        for _ in range(2):
            checker.report(a, Outcome.TCP_FAILURE)
        assert not a.healthy
        assert 0 < checker.details(a)["returns_in"] <= 0.2  # type: ignore[operator]
        first = await wait_for(lambda: a.healthy)
        assert 0.1 < first < 2
        for _ in range(2):
            checker.report(a, Outcome.TCP_FAILURE)
        assert not a.healthy
        assert 0.2 < checker.details(a)["returns_in"] <= 0.4  # type: ignore[operator]
        await wait_for(lambda: a.healthy)
        assert checker.details(a)["reason"] == "cool-down over (ejection 2)"
        await checker.close()

    asyncio.run(scenario())


def test_threshold_makes_the_upstream_unavailable() -> None:
    lb = balancer(4)
    checker = HealthChecker("up", checks(threshold=60, **PASSIVE), lb)
    first, second = lb.endpoints[:2]
    for _ in range(2):
        checker.report(first, Outcome.TCP_FAILURE)
    assert not checker.unavailable  # 75% healthy
    for _ in range(2):
        checker.report(second, Outcome.TCP_FAILURE)
    assert checker.unavailable  # 50% < 60%


# ---------------------------------------------------------------------------------------------- probes
def probe_for(**active: Any) -> HttpProbe:
    return HttpProbe(checks(active=active).active)


def test_http_probe_reads_the_status() -> None:
    demo = DemoUpstream("probe").start()
    try:
        ep = Endpoint("localhost", "127.0.0.1", demo.port)

        async def scenario() -> tuple[int | Outcome, int | Outcome, int | Outcome]:
            ok = await probe_for(http_path="/")(ep)
            failing = await probe_for(http_path="/status/503")(ep)
            tcp = await probe_for(type="tcp")(ep)
            return ok, failing, tcp

        assert asyncio.run(scenario()) == (200, 503, Outcome.SUCCESS)
    finally:
        demo.stop()


def test_http_probe_sends_host_path_and_headers() -> None:
    rec = RecordingUpstream().start()
    try:
        ep = Endpoint("svc.internal", "127.0.0.1", rec.port)
        probe = probe_for(http_path="/healthz", headers={"X-Probe": ["1"]})
        assert asyncio.run(probe(ep)) == 200
        head = rec.data().split(b"\r\n\r\n")[0]
        assert head.startswith(b"GET /healthz HTTP/1.1\r\n")
        assert f"Host: svc.internal:{rec.port}".encode() in head
        assert b"X-Probe: 1" in head
    finally:
        rec.stop()


def test_probe_failures_are_tcp_failures_and_timeouts() -> None:
    silent = RecordingUpstream(lambda sock, data: False).start()
    try:
        refused = Endpoint("x", "127.0.0.1", free_port())
        hanging = Endpoint("x", "127.0.0.1", silent.port)

        async def scenario() -> tuple[int | Outcome, int | Outcome]:
            probe = probe_for(timeout=0.2)
            return await probe(refused), await probe(hanging)

        assert asyncio.run(scenario()) == (Outcome.TCP_FAILURE, Outcome.TIMEOUT)
    finally:
        silent.stop()


@pytest.mark.parametrize("interval", [0.2])
def test_running_checker_removes_a_dead_instance_within_interval_times_threshold(interval: float) -> None:
    demo = DemoUpstream("alive").start()
    dead_port = free_port()

    async def scenario() -> float:
        lb = RoundRobinBalancer(
            [Endpoint("127.0.0.1", "127.0.0.1", demo.port), Endpoint("127.0.0.1", "127.0.0.1", dead_port)]
        )
        record = checks(
            active={
                "timeout": 0.5,
                "healthy": {"interval": interval, "successes": 1},
                "unhealthy": {"interval": interval, "tcp_failures": 2},
            }
        )
        checker = HealthChecker("up", record, lb)
        checker.start()
        try:
            took = await wait_for(lambda: not lb.endpoints[1].healthy)
            assert lb.endpoints[0].healthy
            return took
        finally:
            await checker.close()
            await asyncio.sleep(0.2)  # the demo handles the last probe before it is stopped

    try:
        took = asyncio.run(scenario())
    finally:
        demo.stop()
    assert took <= interval * 2 + 1.0  # two probe rounds, generous slack for a loaded machine


# ---------------------------------------------------------------------------------------------- reloads
def plan_config(healthchecks: dict[str, Any], breaker: dict[str, Any] | None = None) -> str:
    import json

    service: dict[str, Any] = {"name": "svc", "host": "pool", "routes": [{"name": "r", "paths": ["/"]}]}
    if breaker is not None:
        service["circuit_breaker"] = breaker
    upstream = {"name": "pool", "targets": [{"target": "127.0.0.1:9001"}], "healthchecks": healthchecks}
    return json.dumps({"_format_version": "3.0", "services": [service], "upstreams": [upstream]})


def test_checkers_and_breakers_survive_reloads_of_an_unchanged_config() -> None:
    from forecourt.config import parse_config
    from forecourt.plan.build import PlanBuilder

    async def scenario() -> None:
        builder = PlanBuilder()
        passive = {"passive": {"unhealthy": {"tcp_failures": 1}}}
        first = builder.build(parse_config(plan_config(passive, {"failures": 1}), "a.json"))
        await builder.prepare(first)
        service = first.services["svc"]
        assert service.health is first.health["pool"] and service.breakers is not None
        (ep,) = service.targets.balancer.endpoints
        service.health.report(ep, Outcome.TCP_FAILURE)
        service.breakers.record(ep, False)
        assert not ep.healthy and not service.breakers.allow(ep)

        second = builder.build(parse_config(plan_config(passive, {"failures": 1}), "a.json"))
        builder.retire(first, second)
        assert second.services["svc"].health is service.health  # same checker, same state
        assert second.services["svc"].breakers is service.breakers
        assert second.services["svc"].retry_budget is service.retry_budget
        assert not ep.healthy

        third = builder.build(parse_config(plan_config({}), "a.json"))  # checks and breaker removed
        builder.retire(second, third)
        assert third.services["svc"].health is None and third.services["svc"].breakers is None
        assert ep.healthy  # nothing checks it any more: back in rotation
        await builder.close(third)

    asyncio.run(scenario())
