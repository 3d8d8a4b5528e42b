"""Client-side discovery: the cache and its refresh, choice, `call()` failover, the Eureka provider
against the real registry, and `forecourt resolve`."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from forecourt.discovery.client import (
    CallError,
    Client,
    EurekaProvider,
    NoInstancesError,
    ProviderError,
    resolve_command,
)
from forecourt.discovery.instance import Instance
from tests.registry.support import ThreadRegistry, instance_json
from tests.support.net import free_port
from tests.support.upstreams import DemoUpstream, RecordingUpstream, respond_when_complete

UNAVAILABLE = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"


class ListProvider:
    """A provider whose answer the test changes; `fail` makes the next fetches raise."""

    def __init__(self, *instances: Instance) -> None:
        self.instances = list(instances)
        self.fetches = 0
        self.fail = False

    async def fetch(self, app: str) -> list[Instance]:
        self.fetches += 1
        if self.fail:
            raise ConnectionRefusedError("registry down")
        return list(self.instances)


def at(port: int, status: str = "UP") -> Instance:
    return Instance("127.0.0.1", port, status=status, instance_id=f"i-{port}")


def dead() -> Instance:
    return at(free_port())


def hang_up(sock: socket.socket, received: bytes) -> bool:
    """Read the request, then close without answering (a crash mid-request)."""
    if b"\r\n\r\n" in received:
        sock.shutdown(socket.SHUT_RDWR)
        return True
    return False


@pytest.fixture
def unavailable() -> Iterator[RecordingUpstream]:
    upstream = RecordingUpstream(respond_when_complete(UNAVAILABLE)).start()
    yield upstream
    upstream.stop()


@pytest.fixture
def hanging_up() -> Iterator[RecordingUpstream]:
    upstream = RecordingUpstream(hang_up).start()
    yield upstream
    upstream.stop()


# ------------------------------------------------------------------------------------------ choice
def test_instances_are_the_up_ones_in_round_robin_order() -> None:
    provider = ListProvider(at(1001), at(1002, "DOWN"), at(1003), at(1004, "OUT_OF_SERVICE"))
    with Client(provider, "orders") as client:
        assert [i.port for i in client.instances()] == [1001, 1003]
        assert [client.choose().port for _ in range(4)] == [1001, 1003, 1001, 1003]


def test_random_choice_stays_among_healthy_instances() -> None:
    provider = ListProvider(at(1001), at(1002), at(1003, "DOWN"))
    with Client(provider, "orders", strategy="random") as client:
        assert {client.choose().port for _ in range(200)} == {1001, 1002}


def test_no_healthy_instance_is_an_error() -> None:
    with Client(ListProvider(at(1001, "DOWN")), "orders") as client:
        with pytest.raises(NoInstancesError):
            client.choose()
        with pytest.raises(NoInstancesError):
            client.call("GET", "/")


# ------------------------------------------------------------------------------------------ cache
def test_the_cache_is_refreshed_in_the_background_and_survives_provider_failures() -> None:
    provider = ListProvider(at(1001))
    with Client(provider, "orders", refresh_interval=0.1) as client:
        assert [i.port for i in client.instances()] == [1001]
        provider.instances = [at(1001), at(1002)]
        deadline = time.monotonic() + 3
        while len(client.instances()) < 2:
            assert time.monotonic() < deadline, "the background refresh never happened"
            time.sleep(0.02)
        provider.fail = True
        fetches = provider.fetches
        while provider.fetches < fetches + 2:
            time.sleep(0.02)
        assert [i.port for i in client.instances()] == [1001, 1002]  # stale beats nothing


def test_a_source_never_reached_is_a_provider_error() -> None:
    provider = ListProvider()
    provider.fail = True
    client = Client(provider, "orders")
    try:
        with pytest.raises(ProviderError, match="registry down"):
            client.instances()
    finally:
        client.close()


def test_async_api_refreshes_on_the_callers_loop() -> None:
    provider = ListProvider(at(1001))

    async def run() -> None:
        async with Client(provider, "orders", refresh_interval=0.05) as client:
            assert [i.port for i in await client.ainstances()] == [1001]
            provider.instances = [at(1002)]
            for _ in range(100):
                if [i.port for i in await client.ainstances()] == [1002]:
                    break
                await asyncio.sleep(0.01)
            assert (await client.achoose()).port == 1002

    asyncio.run(run())


# ------------------------------------------------------------------------------------------ calls
def test_call_fails_over_from_an_instance_that_refuses_connections(demo_upstream: DemoUpstream) -> None:
    down = dead()
    with Client(ListProvider(down, at(demo_upstream.port)), "orders", eject_for=30) as client:
        for method in ("GET", "POST"):  # nothing was sent: safe for every method
            answer = client.call(method, "/orders", json={"n": 1})
            assert answer.status == 200 and answer.instance is not None
            assert answer.instance.port == demo_upstream.port
            assert answer.json()["method"] == method
        # The dead instance is avoided while it is ejected, even though the registry lists it.
        assert {client.choose().port for _ in range(4)} == {demo_upstream.port}


def test_5xx_fails_over_only_for_idempotent_methods(
    demo_upstream: DemoUpstream, unavailable: RecordingUpstream
) -> None:
    provider = ListProvider(at(unavailable.port), at(demo_upstream.port))
    with Client(provider, "orders") as client:
        got = client.call("GET", "/x")
        assert (got.status, got.instance.port if got.instance else 0) == (200, demo_upstream.port)
        posts = [client.call("POST", "/x", body=b"{}").status for _ in range(2)]
        assert sorted(posts) == [200, 503]  # one POST landed on the 503 instance and kept its answer


def test_when_every_instance_answers_5xx_the_last_answer_is_returned(unavailable: RecordingUpstream) -> None:
    with Client(ListProvider(at(unavailable.port)), "orders") as client:
        answer = client.call("GET", "/x")
        assert (answer.status, answer.body) == (503, b"busy")


def test_a_broken_exchange_fails_over_for_get_but_not_for_post(
    demo_upstream: DemoUpstream, hanging_up: RecordingUpstream
) -> None:
    provider = ListProvider(at(hanging_up.port), at(demo_upstream.port))
    with Client(provider, "orders", eject_for=0) as client:
        for _ in range(2):
            assert client.call("GET", "/x").status == 200
        outcomes = []
        for _ in range(2):
            try:
                outcomes.append(client.call("POST", "/x", body=b"data").status)
            except CallError as exc:
                assert exc.attempts[0][0].port == hanging_up.port
                outcomes.append(0)
        assert sorted(outcomes) == [0, 200]


def test_every_instance_dead_is_a_call_error_listing_the_attempts() -> None:
    with Client(ListProvider(dead(), dead()), "orders") as client:
        with pytest.raises(CallError) as caught:
            client.call("GET", "/")
        assert len(caught.value.attempts) == 2
        assert "cannot connect" in str(caught.value)


def test_async_call_fails_over(demo_upstream: DemoUpstream, unavailable: RecordingUpstream) -> None:
    async def run() -> list[int]:
        provider = ListProvider(dead(), at(unavailable.port), at(demo_upstream.port))
        async with Client(provider, "orders") as client:
            answers = [await client.acall("GET", "/a") for _ in range(3)]
            head = await client.acall("HEAD", "/a")
            assert head.status == 200 and head.body == b""
            return [a.instance.port for a in answers if a.status == 200 and a.instance]

    assert asyncio.run(run()) == [demo_upstream.port] * 3


# ------------------------------------------------------------------------------------------ Eureka
@pytest.fixture
def registry() -> Iterator[ThreadRegistry]:
    server = ThreadRegistry().start()
    yield server
    server.stop()


def test_eureka_provider_reads_the_registry(registry: ThreadRegistry, demo_upstream: DemoUpstream) -> None:
    with httpx.Client(base_url=registry.url) as http:
        http.post("apps/ORDERS", json=instance_json(instance_id="a", port=demo_upstream.port))
        secure = instance_json(instance_id="b", port=8080)
        secure["instance"].update(
            port={"$": 8080, "@enabled": "false"}, securePort={"$": 8443, "@enabled": "true"}
        )
        http.post("apps/ORDERS", json=secure)
        http.post("apps/ORDERS", json=instance_json(instance_id="c", port=8003))
        http.put("apps/ORDERS/c/status?value=OUT_OF_SERVICE")

    found = asyncio.run(EurekaProvider(registry.url).fetch("orders"))
    assert [(i.instance_id, i.port, i.secure, i.status) for i in found] == [
        ("a", demo_upstream.port, False, "UP"),
        ("b", 8443, True, "UP"),
        ("c", 8003, False, "OUT_OF_SERVICE"),
    ]
    assert found[0].metadata == {"management.port": str(demo_upstream.port)}
    assert found[1].url == "https://127.0.0.1:8443"
    assert asyncio.run(EurekaProvider(registry.url).fetch("nobody")) == []

    # Several registries: the first that answers wins.
    dead_registry = f"http://127.0.0.1:{free_port()}/eureka/"
    assert len(asyncio.run(EurekaProvider([dead_registry, registry.url]).fetch("ORDERS"))) == 3
    with pytest.raises(ProviderError, match="cannot fetch instances of ORDERS"):
        asyncio.run(EurekaProvider(dead_registry, timeout=1).fetch("orders"))

    with Client(registry.url, "orders") as client:
        assert [i.instance_id for i in client.instances()] == ["a", "b"]
        answer = client.call("GET", "/hello")  # round-robin starts with the first instance
        assert (answer.status, answer.instance.instance_id if answer.instance else "") == (200, "a")


def test_resolve_prints_instances(registry: ThreadRegistry, capsys: pytest.CaptureFixture[str]) -> None:
    with httpx.Client(base_url=registry.url) as http:
        http.post("apps/ORDERS", json=instance_json(instance_id="a", port=8001))
        http.post("apps/ORDERS", json=instance_json(instance_id="b", port=8002, status="STARTING"))
    assert resolve_command("orders", registry.url, 5) == 0
    assert capsys.readouterr().out.splitlines() == ["127.0.0.1:8001 UP", "127.0.0.1:8002 STARTING"]

    assert resolve_command("nobody", registry.url, 5) == 1
    assert "no instances of NOBODY" in capsys.readouterr().err
    assert resolve_command("orders", f"http://127.0.0.1:{free_port()}/eureka", 1) == 1
    assert "cannot fetch instances of ORDERS" in capsys.readouterr().err
