"""Server-side discovery over the wire: a real `forecourt run` whose upstream follows etcd and DNS."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.dnsmasq import run_dnsmasq
from tests.support.etcd import run_etcd
from tests.support.gateway import GatewayProcess
from tests.support.net import free_port, wait_for_port
from tests.support.upstreams import DemoUpstream


@pytest.fixture
def upstreams() -> Iterator[list[DemoUpstream]]:
    started = [DemoUpstream("a").start(), DemoUpstream("b").start()]
    yield started
    for upstream in started:
        upstream.stop()


def discovered(discovery: dict[str, Any]) -> dict[str, Any]:
    return {
        "_format_version": "3.0",
        "services": [
            {"name": "orders", "host": "orders", "port": 80, "routes": [{"name": "r", "paths": ["/"]}]}
        ],
        "upstreams": [{"name": "orders", "discovery": discovery}],
    }


def served_by(client: httpx.Client, path: str = "/") -> str:
    response = client.get(path)
    assert response.status_code == 200, response.text
    name: str = response.json()["service"]
    return name


def until_served_only_by(client: httpx.Client, name: str, within: float = 5.0) -> float:
    """Seconds until 10 requests in a row reach `name` (polled every 20 ms)."""
    start = time.monotonic()
    while True:
        if all(served_by(client) == name for _ in range(10)):
            return time.monotonic() - start
        if time.monotonic() - start > within:
            raise AssertionError(f"traffic did not move to {name} within {within}s")
        time.sleep(0.02)


def test_etcd_changes_apply_without_reload_and_an_outage_keeps_the_last_set(
    tmp_path: Path, upstreams: list[DemoUpstream], gateway_factory: Callable[..., GatewayProcess]
) -> None:
    a, b = upstreams
    with run_etcd(tmp_path) as etcd:
        etcd.put("/services/orders/a", {"host": "127.0.0.1", "port": a.port})
        admin_port = free_port()
        config = discovered({"type": "etcd", "endpoints": [etcd.url], "prefix": "/services/orders/"})
        gateway = gateway_factory(config, "--admin-listen", f"127.0.0.1:{admin_port}")
        admin = f"http://127.0.0.1:{admin_port}"
        with httpx.Client(base_url=gateway.url, timeout=10) as client:
            assert {served_by(client) for _ in range(10)} == {"a"}

            # A request in flight on `a` when `a` is removed finishes there.
            slow: dict[str, Any] = {}

            def occupy() -> None:
                with httpx.Client(base_url=gateway.url, timeout=10) as slow_client:
                    response = slow_client.get("/delay/800")
                    slow["status"], slow["by"] = response.status_code, response.json()["service"]

            thread = threading.Thread(target=occupy)
            thread.start()
            time.sleep(0.2)
            etcd.put("/services/orders/b", {"host": "127.0.0.1", "port": b.port})
            etcd.delete("/services/orders/a")
            took = until_served_only_by(client, "b")
            thread.join()
            assert slow == {"status": 200, "by": "a"}
            assert took < 1.0, f"an etcd change took {took:.2f}s to reach the proxy"

            health = httpx.get(f"{admin}/upstreams/orders/health").json()
            assert health["discovery"]["status"] == "ok"
            assert [t["target"] for t in health["data"]] == [f"127.0.0.1:{b.port}"]

            etcd.kill()
            deadline = time.monotonic() + 5
            while httpx.get(f"{admin}/upstreams/orders/health").json()["discovery"]["status"] != "stale":
                assert time.monotonic() < deadline, "health never reported the outage"
                time.sleep(0.05)
            assert {served_by(client) for _ in range(20)} == {"b"}  # the last known set still serves
            health = httpx.get(f"{admin}/upstreams/orders/health").json()
            assert health["discovery"]["error"] and health["discovery"]["since"] > 0
            assert [t["target"] for t in health["data"]] == [f"127.0.0.1:{b.port}"]
    assert "reloaded" not in gateway.stderr()  # no config reload was involved


def test_dns_discovery_follows_a_record_change_over_the_wire(
    tmp_path: Path, gateway_factory: Callable[..., GatewayProcess]
) -> None:
    first = DemoUpstream("first", host="127.0.0.2").start()
    second = DemoUpstream("second", host="127.0.0.3", port=first.port).start()
    try:
        with run_dnsmasq(tmp_path) as dns:
            assert dns is not None, "dnsmasq is missing: make test installs it"
            dns.set_hosts("127.0.0.2 orders.default.svc.cluster.test\n")
            config = discovered(
                {
                    "type": "dns",
                    "name": "orders.default.svc.cluster.test",
                    "port": first.port,
                    "interval": 0.2,
                }
            )
            gateway = gateway_factory(config, "--dns-resolver", dns.nameserver)
            with httpx.Client(base_url=gateway.url, timeout=10) as client:
                assert {served_by(client) for _ in range(5)} == {"first"}
                response = client.get("/")
                assert response.json()["headers"]["host"].startswith("orders.default.svc.cluster.test")
                dns.set_hosts("127.0.0.3 orders.default.svc.cluster.test\n")
                took = until_served_only_by(client, "second")
                assert took < 2.0, f"a DNS change (TTL 1 s) took {took:.2f}s to reach the proxy"
    finally:
        first.stop()
        second.stop()


def register(registry: str, instance_id: str, port: int) -> None:
    instance = {
        "instanceId": instance_id,
        "hostName": "127.0.0.1",
        "app": "ORDER-SERVICE",
        "ipAddr": "127.0.0.1",
        "status": "UP",
        "port": {"$": port, "@enabled": "true"},
        "dataCenterInfo": {
            "@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo",
            "name": "MyOwn",
        },
    }
    response = httpx.post(f"{registry}/apps/ORDER-SERVICE", json={"instance": instance})
    assert response.status_code == 204, response.text


def test_eureka_discovery_against_forecourt_registry(
    tmp_path: Path, upstreams: list[DemoUpstream], gateway_factory: Callable[..., GatewayProcess]
) -> None:
    a, b = upstreams
    port = free_port()
    log = (tmp_path / "registry.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "forecourt.cli", "registry", "--listen", f"127.0.0.1:{port}"],
        stdout=log,
        stderr=log,
    )
    try:
        wait_for_port(port)
        registry = f"http://127.0.0.1:{port}/eureka"
        register(registry, "orders-a", a.port)
        config = discovered({"type": "eureka", "url": registry, "app": "ORDER-SERVICE", "interval": 0.2})
        gateway = gateway_factory(config)
        with httpx.Client(base_url=gateway.url, timeout=10) as client:
            assert {served_by(client) for _ in range(5)} == {"a"}
            register(registry, "orders-b", b.port)
            assert httpx.delete(f"{registry}/apps/ORDER-SERVICE/orders-a").status_code == 200
            took = until_served_only_by(client, "b")
            assert took < 1.5, f"a registry change (interval 0.2 s) took {took:.2f}s to reach the proxy"
    finally:
        process.terminate()
        process.wait(10)
        log.close()
