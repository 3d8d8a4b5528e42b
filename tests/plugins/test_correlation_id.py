"""correlation-id: schema, id formats, and the header on the wire (upstream request and echo)."""

from __future__ import annotations

import os
import re
import uuid
import warnings
from collections.abc import Callable

import httpx
import pytest

from forecourt.plugins.correlation_id import (
    CorrelationIdConfig,
    CorrelationIdPlugin,
    uuid4_text,
    uuid_counter_text,
)
from forecourt.plugins.correlation_ids import WORKER_IDS
from tests.plugins.offloading_helpers import config_errors
from tests.support.gateway import GatewayProcess
from tests.support.upstreams import DemoUpstream

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


# ---------------------------------------------------------------------- schema
def test_defaults_are_kongs() -> None:
    config = CorrelationIdConfig()
    assert config.header_name == "Kong-Request-ID"
    assert config.generator == "uuid#counter"
    assert config.echo_downstream is False
    assert CorrelationIdPlugin.priority == 100001


def test_seed_snippet_loads_unchanged() -> None:
    assert config_errors("correlation-id", {"header_name": "X-Request-ID", "generator": "uuid"}) == []
    assert config_errors("correlation-id", None) == []


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"generator": "uuid4"}, "plugins[0].config.generator: expected 'uuid', 'uuid#counter' or 'tracker'"),
        (
            {"header_name": "X Request"},
            "plugins[0].config.header_name: 'X Request' is not a valid header name",
        ),
        ({"header_name": ""}, "plugins[0].config.header_name: '' is not a valid header name"),
        ({"echo_downstream": "maybe"}, "plugins[0].config.echo_downstream: expected a boolean"),
        ({"headers_name": "X"}, 'plugins[0].config.headers_name: unknown field "headers_name"'),
    ],
)
def test_bad_values_are_refused_clearly(config: dict[str, object], message: str) -> None:
    errors = config_errors("correlation-id", config)
    assert len(errors) == 1
    assert errors[0].startswith(message)


# ---------------------------------------------------------------------- generators
def test_uuid_generator_makes_random_version_4_uuids() -> None:
    ids = {uuid4_text() for _ in range(1000)}
    assert len(ids) == 1000
    for text in list(ids)[:50]:
        assert re.fullmatch(UUID, text)
        parsed = uuid.UUID(text)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_uuid_counter_is_a_worker_uuid_and_a_counter() -> None:
    first, second = uuid_counter_text(), uuid_counter_text()
    prefix, _, n = first.partition("#")
    assert re.fullmatch(UUID, prefix)
    assert second == f"{prefix}#{int(n) + 1}"


def test_forked_workers_get_their_own_uuid_prefix() -> None:
    parent = WORKER_IDS.prefix
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (Python >= 3.12)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.write(write, uuid_counter_text().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 200).decode()
    os.close(read)
    assert child.endswith("#1")
    assert not child.startswith(parent)


# ---------------------------------------------------------------------- over the wire
@pytest.fixture
def gateway(demo_upstream: DemoUpstream, gateway_factory: Callable[..., GatewayProcess]) -> GatewayProcess:
    def route(name: str, config: dict[str, object]) -> dict[str, object]:
        return {
            "name": name,
            "paths": [f"/{name}"],
            "plugins": [{"name": "correlation-id", "config": config}],
        }

    return gateway_factory(
        {
            "services": [
                {
                    "name": "svc",
                    "url": f"http://127.0.0.1:{demo_upstream.port}",
                    "routes": [
                        route("seed", {"header_name": "X-Request-ID", "generator": "uuid"}),
                        route("echo", {"echo_downstream": True}),
                        route("tracker", {"generator": "tracker", "echo_downstream": True}),
                    ],
                }
            ]
        }
    )


def test_seed_config_adds_a_uuid_upstream_without_echo(gateway: GatewayProcess) -> None:
    with httpx.Client(base_url=gateway.url) as client:
        first = client.get("/seed")
        second = client.get("/seed")
        kept = client.get("/seed", headers={"X-Request-ID": "abc-123"})
        emptied = client.get("/seed", headers={"X-Request-ID": ""})
    ids = [r.json()["headers"]["x-request-id"] for r in (first, second)]
    assert all(re.fullmatch(UUID, i) for i in ids)
    assert ids[0] != ids[1]
    assert "x-request-id" not in first.headers  # echo_downstream is off
    assert kept.json()["headers"]["x-request-id"] == "abc-123"  # the client's id is honoured
    assert re.fullmatch(UUID, emptied.json()["headers"]["x-request-id"])  # an empty one is not


def test_echo_downstream_returns_the_id_the_upstream_saw(gateway: GatewayProcess) -> None:
    with httpx.Client(base_url=gateway.url) as client:
        first = client.get("/echo")
        second = client.get("/echo")
        given = client.get("/echo", headers={"Kong-Request-ID": "from-client"})
    seen = first.json()["headers"]["kong-request-id"]
    assert first.headers["kong-request-id"] == seen
    prefix, _, counter = seen.partition("#")
    assert re.fullmatch(UUID, prefix)
    assert second.headers["kong-request-id"] == f"{prefix}#{int(counter) + 1}"
    assert given.headers["kong-request-id"] == "from-client"
    assert given.json()["headers"]["kong-request-id"] == "from-client"


def test_tracker_generator_format(gateway: GatewayProcess) -> None:
    with httpx.Client(base_url=gateway.url) as client:
        answer = client.get("/tracker")
    value = answer.headers["kong-request-id"]
    assert value == answer.json()["headers"]["kong-request-id"]
    assert re.fullmatch(rf"127\.0\.0\.1-{gateway.port}-\d+-\d+-\d+-\d+\.\d{{3}}", value)
