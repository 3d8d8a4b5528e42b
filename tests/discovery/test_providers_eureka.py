"""The eureka provider against a small Eureka-compatible server: full fetch, deltas, filters."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from forecourt.discovery import DiscoveredTargets, EurekaRegistryProvider, TargetSpec
from forecourt.discovery.providers.eureka import instance_target
from tests.discovery.conftest import keys, wait_for


def instance(n: int, status: str = "UP", **extra: Any) -> dict[str, Any]:
    """An instance record the way Eureka's Jackson codec writes it."""
    record = {
        "instanceId": f"orders-{n}",
        "app": "ORDER-SERVICE",
        "hostName": f"orders-{n}.local",
        "ipAddr": f"127.0.0.{n}",
        "status": status,
        "port": {"$": 8000 + n, "@enabled": "true"},
        "securePort": {"$": 8400 + n, "@enabled": "false"},
        "metadata": {"@class": "java.util.Collections$EmptyMap"},
    }
    record.update(extra)
    return record


class FakeEureka:
    """Serves ``/eureka/apps/{APP}`` and ``/eureka/apps/delta`` from ``instances`` and ``changes``."""

    def __init__(self, *, delta: bool = True) -> None:
        self.instances: dict[str, dict[str, Any]] = {}
        self.changes: list[dict[str, Any]] = []  # the delta window
        self.delta = delta
        self.paths: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.paths.append(self.path)
                status, body = fake.answer(self.path)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/eureka"

    def answer(self, path: str) -> tuple[int, Any]:
        if path == "/eureka/apps/delta":
            if not self.delta:
                return 403, {"error": "delta disabled"}
            app = {"name": "ORDER-SERVICE", "instance": list(self.changes)}
            return 200, {"applications": {"versions__delta": "7", "apps__hashcode": "", "application": [app]}}
        if path == "/eureka/apps/ORDER-SERVICE" and self.instances:
            return 200, {"application": {"name": "ORDER-SERVICE", "instance": list(self.instances.values())}}
        return 404, {}

    def register(self, record: dict[str, Any]) -> None:
        self.instances[record["instanceId"]] = record
        self.changes.append({**record, "actionType": "ADDED"})

    def cancel(self, instance_id: str) -> None:
        record = self.instances.pop(instance_id)
        self.changes.append({**record, "actionType": "DELETED"})


@pytest.fixture
def eureka() -> Iterator[FakeEureka]:
    server = FakeEureka()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def provider(server: FakeEureka, **options: Any) -> EurekaRegistryProvider:
    options.setdefault("interval", 0.1)
    return EurekaRegistryProvider(server.url, "ORDER-SERVICE", **options)


def spec(port: int, weight: int = 100) -> TargetSpec:
    return TargetSpec("orders-2.local", port, weight, "127.0.0.2")


@pytest.mark.parametrize(
    ("record", "secure", "expected"),
    [
        (instance(2), False, spec(8002)),
        (instance(2, port=8002), False, spec(8002)),
        (instance(2, port={"$": "8002", "@enabled": True}), False, spec(8002)),
        (instance(2, port={"$": 8002, "@enabled": "false"}), False, None),
        (instance(2), True, None),  # secure port disabled
        (instance(2, securePort={"$": 8443, "@enabled": "true"}), True, spec(8443)),
        (instance(2, status="DOWN"), False, None),
        (instance(2, status="OUT_OF_SERVICE"), False, None),
        (instance(2, metadata={"weight": "25"}), False, spec(8002, 25)),
        (instance(2, ipAddr="not-an-ip"), False, None),
    ],
)  # fmt: skip
def test_instance_records(record: dict[str, Any], secure: bool, expected: TargetSpec | None) -> None:
    assert instance_target(record, secure=secure, status="UP") == expected


def test_full_fetch_then_deltas(eureka: FakeEureka) -> None:
    eureka.register(instance(2))
    eureka.register(instance(3, status="STARTING"))

    async def scenario() -> None:
        async with DiscoveredTargets(provider(eureka), name="orders") as source:
            await asyncio.wait_for(source.ready(), 5)
            assert keys(source) == ["127.0.0.2:8002"]
            assert source.endpoints[0].host == "orders-2.local"
            eureka.register(instance(3))  # STARTING -> UP (a MODIFIED in Eureka's words)
            eureka.register(instance(4))
            took = await wait_for(
                lambda: keys(source) == ["127.0.0.2:8002", "127.0.0.3:8003", "127.0.0.4:8004"]
            )
            assert took < 0.5, took
            eureka.cancel("orders-2")
            await wait_for(lambda: keys(source) == ["127.0.0.3:8003", "127.0.0.4:8004"])
        assert eureka.paths[0] == "/eureka/apps/ORDER-SERVICE"
        assert "/eureka/apps/delta" in eureka.paths

    asyncio.run(scenario())


def test_without_delta_support_full_fetches_are_used(eureka: FakeEureka) -> None:
    eureka.delta = False
    eureka.register(instance(2))

    async def scenario() -> None:
        async with DiscoveredTargets(provider(eureka), name="orders") as source:
            await asyncio.wait_for(source.ready(), 5)
            eureka.register(instance(5))
            await wait_for(lambda: keys(source) == ["127.0.0.2:8002", "127.0.0.5:8005"])
            assert eureka.paths.count("/eureka/apps/delta") == 1  # asked once, then never again
            eureka.cancel("orders-2")
            eureka.cancel("orders-5")
            await wait_for(lambda: keys(source) == [])  # 404: nothing registered any more
            assert source.status.state == "ok"

    asyncio.run(scenario())


def test_registry_outage_keeps_the_last_set(eureka: FakeEureka) -> None:
    eureka.register(instance(2))

    async def scenario() -> None:
        async with DiscoveredTargets(provider(eureka), name="orders") as source:
            await asyncio.wait_for(source.ready(), 5)
            await asyncio.to_thread(eureka.server.shutdown)
            eureka.server.server_close()
            await wait_for(lambda: source.status.state == "stale", 3)
            assert keys(source) == ["127.0.0.2:8002"]
            assert "eureka" in (source.status.error or "")

    asyncio.run(scenario())
