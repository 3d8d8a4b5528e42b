"""Routing over the wire: the seed example, Kong's matchers (paths, regex, hosts, methods,
headers), path normalisation against traversal and encoding tricks, and the 404 body."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from tests.support.gateway import GatewayProcess
from tests.support.upstreams import DemoUpstream
from tests.support.wire import WireClient, WireResponse, get


@pytest.fixture(scope="module")
def demos() -> Iterator[dict[str, DemoUpstream]]:
    started = {name: DemoUpstream(name).start() for name in ("orders", "users", "items", "admin")}
    yield started
    for upstream in started.values():
        upstream.stop()


@pytest.fixture(scope="module")
def gateway(
    module_gateway_factory: Callable[..., GatewayProcess], demos: dict[str, DemoUpstream]
) -> GatewayProcess:
    """The seed example (two services behind upstream entities), plus routes for each matcher."""
    config: dict[str, Any] = {
        "_format_version": "3.0",
        "services": [
            {
                "name": "order-service",
                "url": "http://order-service:8080",
                "routes": [{"name": "orders-route", "paths": ["/api/orders"]}],
            },
            {
                "name": "user-service",
                "url": "http://user-service:8080",
                "routes": [{"name": "users-route", "paths": ["/api/users"]}],
            },
            {
                "name": "items",
                "url": f"http://127.0.0.1:{demos['items'].port}/v2",
                "routes": [
                    {"name": "item-by-id", "paths": [r"~/items/(?<id>\d+)"]},
                    {"name": "wildcard-host", "paths": ["/w"], "hosts": ["*.example.test"]},
                    {"name": "post-only", "paths": ["/m"], "methods": ["POST"]},
                    {"name": "versioned", "paths": ["/hv"], "headers": {"x-version": ["2"]}},
                    {"name": "no-strip", "paths": ["/keep"], "strip_path": False},
                ],
            },
            {
                "name": "admin",
                "url": f"http://127.0.0.1:{demos['admin'].port}",
                "routes": [{"name": "admin-route", "paths": ["/internal/admin"]}],
            },
        ],
        "upstreams": [
            {"name": "order-service", "targets": [{"target": f"127.0.0.1:{demos['orders'].port}"}]},
            {"name": "user-service", "targets": [{"target": f"127.0.0.1:{demos['users'].port}"}]},
        ],
    }
    return module_gateway_factory(config)


def fetch(gateway: GatewayProcess, request: bytes) -> WireResponse:
    with WireClient(gateway.port) as client:
        return client.request(request)


def routed(resp: WireResponse) -> tuple[str, str]:
    """(service that answered, path it saw)."""
    assert resp.status == 200, resp
    doc = orjson.loads(resp.body)
    return doc["service"], doc["path"]


def assert_no_route(resp: WireResponse) -> None:
    assert resp.status == 404, resp
    request_id = resp.header("x-forecourt-request-id")
    assert request_id is not None
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    expected = b'{"message":"no Route matched with those values","request_id":"' + request_id.encode() + b'"}'
    assert resp.body == expected
    assert resp.header("content-type") == "application/json; charset=utf-8"


# ---------------------------------------------------------------------------------------- seed example


@pytest.mark.parametrize(
    ("path", "service", "upstream_path"),
    [
        ("/api/orders", "orders", "/"),
        ("/api/orders/", "orders", "/"),
        ("/api/orders/42", "orders", "/42"),
        ("/api/orders/42/lines?x=1", "orders", "/42/lines"),
        ("/api/users", "users", "/"),
        ("/api/users/7", "users", "/7"),
        ("/api/ordersX", "orders", "/X"),  # Kong prefixes are plain string prefixes
    ],
)
def test_seed_routes_reach_their_upstream_with_strip_path(
    gateway: GatewayProcess, path: str, service: str, upstream_path: str
) -> None:
    assert routed(fetch(gateway, get(path))) == (service, upstream_path)


def test_seed_upstream_request_headers(gateway: GatewayProcess, demos: dict[str, DemoUpstream]) -> None:
    resp = fetch(gateway, get("/api/orders/9", host="shop.example.test"))
    headers = orjson.loads(resp.body)["headers"]
    # The service host names an upstream entity: Host is the target's (Kong's default).
    assert headers["host"] == f"127.0.0.1:{demos['orders'].port}"
    assert headers["x-forwarded-prefix"] == "/api/orders"
    assert headers["x-forwarded-path"] == "/api/orders/9"


@pytest.mark.parametrize("path", ["/", "/api", "/api/order", "/API/orders", "/internal"])
def test_unrouted_paths_get_kong_404(gateway: GatewayProcess, path: str) -> None:
    assert_no_route(fetch(gateway, get(path)))


def test_404_keeps_the_connection(gateway: GatewayProcess) -> None:
    with WireClient(gateway.port) as client:
        assert_no_route(client.request(get("/nowhere")))
        assert routed(client.request(get("/api/users/1"))) == ("users", "/1")


# ---------------------------------------------------------------------------------------- matchers


def test_regex_route_with_named_capture(gateway: GatewayProcess) -> None:
    resp = fetch(gateway, get("/items/42/detail"))
    assert routed(resp) == ("items", "/v2/detail")
    headers = orjson.loads(resp.body)["headers"]
    assert headers["x-forwarded-prefix"] == "/items/42"
    assert routed(fetch(gateway, get("/items/7"))) == ("items", "/v2")
    assert_no_route(fetch(gateway, get("/items/abc")))


def test_regex_route_is_anchored_at_the_start(gateway: GatewayProcess) -> None:
    assert_no_route(fetch(gateway, get("/x/items/42")))


@pytest.mark.parametrize(
    ("host", "matches"),
    [
        ("api.example.test", True),
        ("a.b.example.test", True),
        ("API.Example.Test", True),
        ("api.example.test:8000", True),
        ("example.test", False),
        ("api.example.test.evil", False),
        ("apiexample.test", False),
    ],
)
def test_wildcard_host(gateway: GatewayProcess, host: str, matches: bool) -> None:
    resp = fetch(gateway, get("/w", host=host))
    if matches:
        assert routed(resp) == ("items", "/v2")
    else:
        assert_no_route(resp)


def test_methods(gateway: GatewayProcess) -> None:
    assert routed(fetch(gateway, b"POST /m HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"))[0] == "items"
    assert_no_route(fetch(gateway, get("/m")))
    # Methods are case-sensitive tokens; the parser refuses one it does not know.
    assert fetch(gateway, b"post /m HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n").status == 400


def test_headers(gateway: GatewayProcess) -> None:
    assert routed(fetch(gateway, get("/hv", extra="X-Version: 2\r\n")))[0] == "items"
    assert_no_route(fetch(gateway, get("/hv", extra="X-Version: 1\r\n")))
    assert_no_route(fetch(gateway, get("/hv")))
    # Header names match whatever their case on the wire.
    assert routed(fetch(gateway, get("/hv", extra="x-VERSION: 2\r\n")))[0] == "items"


def test_strip_path_false(gateway: GatewayProcess) -> None:
    assert routed(fetch(gateway, get("/keep/a"))) == ("items", "/v2/keep/a")


# ---------------------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize(
    "path",
    [
        "/api/orders/../admin",
        "/api/orders/%2e%2e/admin",
        "/api/orders/%2E%2E/admin",
        "/api/orders/.%2e/admin",
        "/api//admin",
        "/api/orders/../../internal/admin/../../api/admin",
    ],
)
def test_traversal_does_not_reach_a_route_by_its_raw_prefix(gateway: GatewayProcess, path: str) -> None:
    """Routing sees the normalised path (`/api/admin`), which no route serves."""
    assert_no_route(fetch(gateway, get(path)))


@pytest.mark.parametrize(
    ("path", "service", "upstream_path"),
    [
        ("/api/orders/../users/3", "users", "/3"),
        ("/api/orders/%2e%2e/users/3", "users", "/3"),
        ("/api/users/./5", "users", "/5"),
        ("//api//orders//8", "orders", "/8"),
        ("/api/orders/%7Euser", "orders", "/~user"),
        ("/api/orders/../../../internal/admin/x", "admin", "/x"),
    ],
)
def test_normalised_path_is_what_routes_and_what_the_upstream_sees(
    gateway: GatewayProcess, path: str, service: str, upstream_path: str
) -> None:
    assert routed(fetch(gateway, get(path))) == (service, upstream_path)


def test_encoded_slash_is_not_a_separator(gateway: GatewayProcess) -> None:
    assert_no_route(fetch(gateway, get("/api%2Forders")))
    assert_no_route(fetch(gateway, get("/api%2forders/1")))
    # Inside a matched route it stays encoded for the upstream: never decoded into a traversal.
    assert routed(fetch(gateway, get("/api/orders/..%2Fadmin"))) == ("orders", "/..%2Fadmin")
    assert routed(fetch(gateway, get("/api/orders/a%2fb"))) == ("orders", "/a%2Fb")
