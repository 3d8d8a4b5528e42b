"""Two worker processes behind one admin listener: `/status` sums both, `POST /config` reaches both."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from tests.admin.conftest import AdminNode
from tests.support.upstreams import DemoUpstream


@pytest.fixture(scope="module")
def upstream() -> Iterator[DemoUpstream]:
    server = DemoUpstream("orders").start()
    yield server
    server.stop()


def config(port: int, path: str) -> dict[str, Any]:
    route = {"name": "r", "paths": [path]}
    return {"services": [{"name": "orders", "url": f"http://127.0.0.1:{port}", "routes": [route]}]}


@pytest.fixture
def node(tmp_path_factory: pytest.TempPathFactory, upstream: DemoUpstream) -> Iterator[AdminNode]:
    started = AdminNode(
        tmp_path_factory.mktemp("admin-workers"), {"gw": config(upstream.port, "/old")}, "--workers", "2"
    )
    yield started
    started.stop()


def eventually(check: Any, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def fresh_get(node: AdminNode, path: str) -> int:
    """One request on a new connection, so the kernel may hand it to either worker."""
    with httpx.Client(base_url=f"http://127.0.0.1:{node.ports['gw']}", timeout=5) as client:
        return client.get(path, headers={"Connection": "close"}).status_code


def test_status_sums_both_workers(node: AdminNode) -> None:
    pids = eventually(lambda: len(node.admin.get("/status").json()["memory"]["workers"]) == 2)
    assert pids, node.admin.get("/status").json()
    before = node.admin.get("/status").json()["server"]
    for _ in range(20):
        assert fresh_get(node, "/old") == 200
    expected = before["total_requests"] + 20

    def settled() -> bool:
        return bool(node.admin.get("/status").json()["server"]["total_requests"] == expected)

    assert eventually(settled), node.admin.get("/status").json()
    after = node.admin.get("/status").json()["server"]
    assert after["connections_accepted"] == before["connections_accepted"] + 20


def test_post_config_reaches_every_worker(node: AdminNode, upstream: DemoUpstream) -> None:
    text = yaml.safe_dump({**config(upstream.port, "/new"), "listen": [f"127.0.0.1:{node.ports['gw']}"]})
    response = node.admin.post("/config", content=text, headers={"Content-Type": "text/yaml"})
    assert response.status_code == 201, response.text
    digest = response.json()["configuration_hash"]

    def everywhere() -> bool:
        return all(fresh_get(node, "/new") == 200 for _ in range(10))

    assert eventually(everywhere)
    assert all(fresh_get(node, "/old") == 404 for _ in range(10))
    # whichever worker answers the admin request reports the new config
    status_url = f"http://127.0.0.1:{node.admin_port}/status"
    for _ in range(10):
        status = httpx.get(status_url, headers={"Connection": "close"}, timeout=5).json()
        assert status["configuration_hash"] == digest
