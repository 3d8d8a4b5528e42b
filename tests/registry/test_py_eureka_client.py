"""The unmodified py-eureka-client package against `forecourt registry`, with real service processes.

py-eureka-client registers with JSON (`POST apps/{APP}`), heartbeats with `PUT apps/{APP}/{id}?status=
&lastDirtyTimestamp=` (registering again on any error, such as our 404), reads `GET apps/` and
`GET apps/delta` as XML (it sends no Accept header) and re-fetches everything when its own hash of
the registry differs from `apps__hashcode`. On stop it registers DOWN, then deregisters.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from forecourt.discovery.client import Client
from tests.registry.support import EurekaService, RegistryProcess


@pytest.fixture
def registry_process(tmp_path: Path) -> Iterator[RegistryProcess]:
    process = RegistryProcess("--data", str(tmp_path / "registry.json"), "--eviction-interval", "0.2").start()
    yield process
    process.kill()


@pytest.fixture
def services() -> Iterator[Callable[..., EurekaService]]:
    started: list[EurekaService] = []

    def start(registry_url: str, app: str, *args: str) -> EurekaService:
        service = EurekaService(registry_url, app, *args).start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.kill()


def wait_until(condition: Callable[[], bool], within: float = 10.0) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > within:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)
    return time.monotonic() - start


def registered(registry: RegistryProcess, app: str) -> set[str]:
    answer = httpx.get(f"{registry.url}apps/{app}", headers={"Accept": "application/json"})
    if answer.status_code == 404:
        return set()
    return {i["instanceId"] for i in answer.json()["application"]["instance"]}


def test_registered_services_are_resolved_called_and_failed_over(
    registry_process: RegistryProcess, services: Callable[..., EurekaService]
) -> None:
    one = services(registry_process.url, "py-orders")
    two = services(registry_process.url, "py-orders")
    assert registered(registry_process, "PY-ORDERS") == {f"py-orders-{one.port}", f"py-orders-{two.port}"}

    with Client(registry_process.url, "py-orders", refresh_interval=0.5) as client:
        assert sorted(i.port for i in client.instances()) == sorted([one.port, two.port])
        assert all(i.host == "127.0.0.1" and i.status == "UP" for i in client.instances())
        answers = [client.call("GET", "/orders/1") for _ in range(4)]
        assert {a.status for a in answers} == {200}
        assert Counter(a.json()["service"] for a in answers) == {
            f"py-orders@{one.port}": 2,
            f"py-orders@{two.port}": 2,
        }

        # A crash: no deregistration, the registry still lists it, calls fail over to the other.
        one.kill()
        for _ in range(4):
            answer = client.call("GET", "/orders/2")
            assert answer.status == 200 and answer.instance is not None and answer.instance.port == two.port

        # A third instance is visible within one refresh interval of its registration.
        three = services(registry_process.url, "py-orders")
        ports = lambda: {i.port for i in client.instances()}  # noqa: E731
        assert wait_until(lambda: three.port in ports(), within=3) < 0.5 + 0.5  # one interval + slack

        # A clean shutdown deregisters.
        assert two.terminate() == 0
        assert f"py-orders-{two.port}" not in registered(registry_process, "PY-ORDERS")


def test_py_eureka_client_discovery_follows_deltas(
    registry_process: RegistryProcess, services: Callable[..., EurekaService]
) -> None:
    first = services(registry_process.url, "py-billing")
    watcher = services(registry_process.url, "py-watcher", "--discover", "PY-BILLING")
    wait_until(lambda: watcher.seen()[-1:] == [f"py-billing-{first.port}"])

    second = services(registry_process.url, "py-billing")
    both = ",".join(sorted([f"py-billing-{first.port}", f"py-billing-{second.port}"]))
    wait_until(lambda: watcher.seen()[-1:] == [both], within=5)

    assert first.terminate() == 0
    wait_until(lambda: watcher.seen()[-1:] == [f"py-billing-{second.port}"], within=5)


def test_clients_register_again_after_a_registry_restart_without_data(
    tmp_path: Path, services: Callable[..., EurekaService]
) -> None:
    memory_only = RegistryProcess("--eviction-interval", "0.2").start()
    try:
        service = services(memory_only.url, "py-users")
        assert memory_only.stop(signal.SIGTERM) == 0
        restarted = RegistryProcess("--eviction-interval", "0.2", port=memory_only.port).start()
        try:
            # The next heartbeat gets 404, and py-eureka-client registers again.
            wait_until(lambda: registered(restarted, "PY-USERS") == {f"py-users-{service.port}"}, within=5)
        finally:
            restarted.stop()
    finally:
        memory_only.kill()


def test_a_registry_restart_with_data_keeps_py_eureka_client_registrations(
    tmp_path: Path, services: Callable[..., EurekaService]
) -> None:
    data = tmp_path / "registry.json"
    first = RegistryProcess("--data", str(data)).start()
    try:
        service = services(first.url, "py-stock", "--renew", "30")  # no heartbeat during the test
        assert first.stop() == 0
        second = RegistryProcess("--data", str(data), port=first.port).start()
        try:
            assert registered(second, "PY-STOCK") == {f"py-stock-{service.port}"}
            with Client(second.url, "py-stock") as client:
                assert client.call("GET", "/").status == 200
        finally:
            second.stop()
    finally:
        first.kill()
