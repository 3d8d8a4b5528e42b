"""The access log over a real gateway: one JSON line per request, matching what the client saw."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.gateway import GatewayProcess
from tests.support.net import free_port
from tests.support.upstreams import DemoUpstream
from tests.support.wire import WireClient, WireResponse, get


@pytest.fixture(scope="module")
def demo() -> Iterator[DemoUpstream]:
    upstream = DemoUpstream("demo").start()
    yield upstream
    upstream.stop()


@pytest.fixture
def gateway(gateway_factory: Callable[..., GatewayProcess], demo: DemoUpstream) -> GatewayProcess:
    config: dict[str, Any] = {
        "_format_version": "3.0",
        "services": [
            {
                "name": "orders",
                "url": f"http://127.0.0.1:{demo.port}",
                "routes": [{"name": "orders-route", "paths": ["/api/orders"]}],
            },
            {
                "name": "down",
                "url": f"http://127.0.0.1:{free_port()}",
                "retries": 1,
                "routes": [{"name": "down-route", "paths": ["/down"]}],
            },
        ],
    }
    return gateway_factory(config)


def wait_for_records(gateway: GatewayProcess, expected: int) -> list[dict[str, Any]]:
    """The log lines once `expected` of them were flushed (the log is written in batches)."""
    deadline = time.monotonic() + 5.0
    records = gateway.log_records(wait=0.2)
    while len(records) < expected and time.monotonic() < deadline:
        records = gateway.log_records(wait=0.1)
    records = gateway.log_records(wait=0.2)  # and no more than that
    assert len(records) == expected, records
    return records


def records_by_id(gateway: GatewayProcess, expected: int) -> dict[str, dict[str, Any]]:
    records = wait_for_records(gateway, expected)
    by_id = {r["request_id"]: r for r in records}
    assert len(by_id) == expected, "request ids are unique"
    return by_id


def test_one_line_per_proxied_request(gateway: GatewayProcess, demo: DemoUpstream) -> None:
    responses: list[WireResponse] = []
    with WireClient(gateway.port) as client:
        responses.append(client.request(get("/api/orders/1?api_key=s3cr3t-token&page=2")))
        responses.append(
            client.request(b"POST /api/orders HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\n\r\npayload")
        )
        responses.append(client.request(get("/api/orders/bytes/1234")))
    by_id = records_by_id(gateway, 3)
    first, post, sized = (by_id[r.header("x-forecourt-request-id") or ""] for r in responses)

    assert first["method"] == "GET"
    assert first["path"] == "/api/orders/1"
    assert first["status"] == 200
    assert first["route"] == "orders-route"
    assert first["service"] == "orders"
    assert first["target"] == f"127.0.0.1:{demo.port}"
    assert first["client_ip"] == "127.0.0.1"
    assert first["tries"] == 1
    assert first["bytes_out"] == len(responses[0].body)
    latencies = first["latencies"]
    assert set(latencies) >= {"request", "upstream", "proxy"}
    assert all(isinstance(latencies[k], int | float) and latencies[k] >= 0 for k in latencies)
    assert latencies["request"] >= latencies["upstream"]

    assert post["method"] == "POST"
    assert post["bytes_in"] == 7
    assert sized["bytes_out"] == 1234
    assert sized["path"] == "/api/orders/bytes/1234"


def test_query_string_is_never_logged(gateway: GatewayProcess) -> None:
    with WireClient(gateway.port) as client:
        assert client.request(get("/api/orders/x?token=s3cr3t-token")).status == 200
        assert client.request(get("/nowhere?token=s3cr3t-token")).status == 404
        assert client.request(get("/down?token=s3cr3t-token")).status == 502
    wait_for_records(gateway, 3)
    text = gateway.access_log.read_text()
    assert text.count("\n") == 3
    assert "s3cr3t" not in text
    assert "token" not in text


def test_gateway_made_answers_are_logged(gateway: GatewayProcess) -> None:
    with WireClient(gateway.port) as client:
        no_route = client.request(get("/nowhere"))
        refused = client.request(get("/down/x"))
    with WireClient(gateway.port) as client:
        bad = client.request(b"GET /x HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n")
    by_id = records_by_id(gateway, 3)

    r404 = by_id[no_route.header("x-forecourt-request-id") or ""]
    assert r404["status"] == 404
    assert r404["route"] is None
    assert r404["path"] == "/nowhere"

    r502 = by_id[refused.header("x-forecourt-request-id") or ""]
    assert r502["status"] == 502
    assert r502["route"] == "down-route"
    assert r502["service"] == "down"
    assert r502["tries"] == 2, "retries=1: two attempts"
    assert r502["latencies"]["upstream"] is None

    r400 = by_id[bad.header("x-forecourt-request-id") or ""]
    assert r400["status"] == 400
    assert r400["service"] is None


def test_client_abort_is_logged_as_499(gateway: GatewayProcess) -> None:
    with WireClient(gateway.port) as client:
        client.send(get("/api/orders/delay/300"))
    records = wait_for_records(gateway, 1)
    assert records[0]["status"] == 499
    assert records[0]["route"] == "orders-route"
