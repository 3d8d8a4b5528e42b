"""Load balancing over real sockets: upstream entities with several DemoUpstream targets."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.dnsmasq import run_dnsmasq
from tests.support.gateway import GatewayProcess
from tests.support.upstreams import DemoUpstream


@pytest.fixture
def upstreams() -> Iterator[list[DemoUpstream]]:
    started = [DemoUpstream(f"t{i}").start() for i in range(4)]
    yield started
    for upstream in started:
        upstream.stop()


def balanced(targets: list[dict[str, Any]], **upstream: Any) -> dict[str, Any]:
    return {
        "_format_version": "3.0",
        "services": [{"name": "svc", "host": "pool", "port": 80, "routes": [{"name": "r", "paths": ["/"]}]}],
        "upstreams": [{"name": "pool", "targets": targets, **upstream}],
    }


def served_by(client: httpx.Client, path: str = "/", **kwargs: Any) -> str:
    response = client.get(path, **kwargs)
    assert response.status_code == 200, response.text
    name: str = response.json()["service"]
    return name


def test_weighted_round_robin_proportions(
    upstreams: list[DemoUpstream], gateway_factory: Callable[..., GatewayProcess]
) -> None:
    weights = {"t0": 100, "t1": 50, "t2": 25}
    targets = [{"target": f"127.0.0.1:{u.port}", "weight": weights[u.name]} for u in upstreams[:3]]
    gateway = gateway_factory(balanced(targets))
    with httpx.Client(base_url=gateway.url) as client:
        counts = collections.Counter(served_by(client) for _ in range(1000))
    total = sum(weights.values())
    for name, weight in weights.items():
        assert abs(counts[name] / 1000 - weight / total) < 0.05, counts


def test_least_connections_prefers_the_idle_target(
    upstreams: list[DemoUpstream], gateway_factory: Callable[..., GatewayProcess]
) -> None:
    targets = [{"target": f"127.0.0.1:{u.port}"} for u in upstreams[:2]]
    gateway = gateway_factory(balanced(targets, algorithm="least-connections"))
    slow: dict[str, str] = {}

    def occupy() -> None:
        with httpx.Client(base_url=gateway.url, timeout=10) as client:
            slow["name"] = served_by(client, "/delay/1500")

    thread = threading.Thread(target=occupy)
    thread.start()
    time.sleep(0.3)  # the slow request is in flight on one target
    with httpx.Client(base_url=gateway.url) as client:
        quick = [served_by(client) for _ in range(20)]
    thread.join()
    busy = slow["name"]
    assert busy not in quick, (busy, quick)
    assert len(set(quick)) == 1


def test_consistent_hashing_keeps_keys_when_a_target_leaves(
    upstreams: list[DemoUpstream], gateway_factory: Callable[..., GatewayProcess]
) -> None:
    targets = [{"target": f"127.0.0.1:{u.port}"} for u in upstreams]
    config = balanced(targets, algorithm="consistent-hashing", hash_on="header", hash_on_header="X-User")
    gateway = gateway_factory(config)
    keys = [f"user-{i}" for i in range(1000)]
    with httpx.Client(base_url=gateway.url) as client:
        before = {k: served_by(client, headers={"X-User": k}) for k in keys}
        # Stable while the set is unchanged.
        assert all(served_by(client, headers={"X-User": k}) == before[k] for k in keys[:50])
        assert len(set(before.values())) == 4
        leaving = "t3"
        config["upstreams"][0]["targets"] = targets[:3]
        gateway.write_config(config)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the gateway polls its file once a second
            if all(served_by(client, headers={"X-User": k}) != leaving for k in keys[:60]):
                break
            time.sleep(0.3)
        after = {k: served_by(client, headers={"X-User": k}) for k in keys}
    assert leaving not in after.values()
    kept = sum(1 for k in keys if before[k] == after[k])
    assert kept / len(keys) >= 0.70, kept
    # Only the departed target's keys moved.
    assert all(after[k] == before[k] for k in keys if before[k] != leaving)


def test_hostname_with_two_a_records_spreads_load(
    tmp_path: Path, gateway_factory: Callable[..., GatewayProcess]
) -> None:
    first = DemoUpstream("a", host="127.0.0.2").start()
    second = DemoUpstream("b", host="127.0.0.3", port=first.port).start()
    try:
        with run_dnsmasq(tmp_path) as dns:
            assert dns is not None, "dnsmasq is missing: make test installs it"
            dns.set_hosts("127.0.0.2 svc.test\n127.0.0.3 svc.test\n")
            config = balanced([{"target": f"svc.test:{first.port}"}])
            gateway = gateway_factory(config, "--dns-resolver", dns.nameserver)
            with httpx.Client(base_url=gateway.url) as client:
                counts = collections.Counter(served_by(client) for _ in range(200))
                assert counts == {"a": 100, "b": 100}, counts
                # Host header is the target's name, as Kong sends it.
                response = client.get("/")
                assert response.json()["headers"]["host"] == f"svc.test:{first.port}"
    finally:
        first.stop()
        second.stop()
