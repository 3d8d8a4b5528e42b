"""Active health checks against real instances on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time

import httpx

from forecourt.registry.health import HealthChecker, ProbeResult, probe
from forecourt.registry.model import InstanceInfo, Status
from forecourt.registry.store import RegistryStore
from tests.registry.support import ThreadRegistry, instance_json
from tests.support.net import free_port
from tests.support.upstreams import DemoUpstream


def info(instance_id: str, url: str) -> InstanceInfo:
    return InstanceInfo(
        instance_id=instance_id, app="ORDERS", host_name="h", ip_addr="127.0.0.1", health_check_url=url
    )


def test_probe_classifies_outcomes(demo_upstream: DemoUpstream) -> None:
    base = f"http://127.0.0.1:{demo_upstream.port}"

    async def run() -> list[ProbeResult]:
        return [
            await probe(f"{base}/health", 2),
            await probe(f"{base}/status/503", 2),
            await probe(f"{base}/status/404", 2),
            await probe(f"http://127.0.0.1:{free_port()}/health", 2),
            await probe(f"{base}/delay/1000", 0.2),
        ]

    assert asyncio.run(run()) == [
        ProbeResult.HEALTHY,
        ProbeResult.UNHEALTHY,
        ProbeResult.UNHEALTHY,
        ProbeResult.UNREACHABLE,
        ProbeResult.UNHEALTHY,  # alive but too slow: DOWN, not evicted
    ]


def test_checker_marks_down_restores_and_evicts(demo_upstream: DemoUpstream) -> None:
    base = f"http://127.0.0.1:{demo_upstream.port}"
    store = RegistryStore()
    store.register(info("fine", f"{base}/health"))
    store.register(info("failing", f"{base}/status/503"))
    store.register(info("dead", f"http://127.0.0.1:{free_port()}/health"))
    store.register(info("unprobed", ""))
    changes = []

    async def on_change() -> None:
        changes.append(store.version)

    checker = HealthChecker(store, interval=1, timeout=1, on_change=on_change)

    def status(instance_id: str) -> Status | None:
        reg = store.get("ORDERS", instance_id)
        return None if reg is None else reg.effective_status

    asyncio.run(checker.check_once())
    # One failure is not enough to act on.
    assert [status(i) for i in ("fine", "failing", "dead", "unprobed")] == [Status.UP] * 4
    asyncio.run(checker.check_once())
    assert [status(i) for i in ("fine", "failing", "dead", "unprobed")] == [
        Status.UP,
        Status.DOWN,
        None,
        Status.UP,
    ]
    assert len(changes) == 1

    # The instance fixes its health endpoint and registers again: restored on the next probe.
    store.register(info("failing", f"{base}/health"))
    assert status("failing") is Status.DOWN
    asyncio.run(checker.check_once())
    assert status("failing") is Status.UP


def test_registry_with_health_checks_evicts_a_dead_instance_before_its_lease_ends() -> None:
    registry = ThreadRegistry(health_check_interval=0.1, health_check_timeout=0.5).start()
    try:
        dead_port = free_port()
        with httpx.Client(base_url=registry.url.rstrip("/")) as http:
            assert (
                http.post("/apps/ORDERS", json=instance_json(port=dead_port, duration=90)).status_code == 204
            )
            started = time.monotonic()
            while http.get("/apps/ORDERS").status_code != 404:
                assert time.monotonic() - started < 5, "the dead instance was not evicted"
                time.sleep(0.05)
    finally:
        registry.stop()
