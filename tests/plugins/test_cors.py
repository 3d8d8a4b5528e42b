"""cors: schema (Kong's fields and defaults, `*` with credentials refused) and behaviour on the wire."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from forecourt.plugins.cors import ALL_METHODS, CorsConfig, CorsPlugin, normalize_origin
from tests.plugins.offloading_helpers import config_errors
from tests.support.gateway import GatewayProcess
from tests.support.upstreams import DemoUpstream

STRICT = {
    "origins": ["https://app.example.com", r"(.*)\.example\.org", "http://localhost:3000"],
    "credentials": True,
    "headers": ["X-Token", "Content-Type"],
    "exposed_headers": ["X-Total", "X-Page"],
    "methods": ["GET", "POST"],
    "max_age": 600,
    "private_network": True,
}


# ---------------------------------------------------------------------- schema
def test_defaults_are_kongs() -> None:
    config = CorsConfig()
    assert config.origins is None
    assert config.methods == ["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE", "CONNECT"]
    assert (config.headers, config.exposed_headers, config.max_age) == (None, None, None)
    assert (config.credentials, config.preflight_continue, config.private_network) == (False, False, False)
    assert config.allow_origin_absent is True
    assert CorsPlugin.priority == 2000
    assert config_errors("cors", STRICT) == []


CREDENTIALS_MESSAGE = "credentials: true needs an explicit list of origins"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"origins": ["*"], "credentials": True}, f"plugins[0].config: {CREDENTIALS_MESSAGE}"),
        ({"credentials": True}, f"plugins[0].config: {CREDENTIALS_MESSAGE}"),
        (
            {"origins": ["https://a.example", "*"], "credentials": True},
            f"plugins[0].config: {CREDENTIALS_MESSAGE}",
        ),
        ({"methods": ["GET", "FETCH"]}, "plugins[0].config.methods[1]: expected 'GET', 'HEAD'"),
        (
            {"origins": ["https://(unclosed.example"]},
            "plugins[0].config.origins: 'https://(unclosed.example' is not a valid regular expression",
        ),
        ({"origins": [""]}, "plugins[0].config.origins: an origin must not be empty"),
        ({"max_age": "long"}, "plugins[0].config.max_age: expected a number"),
        ({"origin": "https://a.example"}, 'plugins[0].config.origin: unknown field "origin"'),
    ],
)
def test_bad_values_are_refused_clearly(config: dict[str, Any], message: str) -> None:
    errors = config_errors("cors", config)
    assert len(errors) == 1, errors
    assert errors[0].startswith(message), errors


def test_origin_normalisation() -> None:
    assert normalize_origin("https://App.example.com:443") == ("https://app.example.com", "app.example.com")
    assert normalize_origin("http://a.example:8080") == ("http://a.example:8080", "a.example")
    assert normalize_origin("null") == ("null", "null")


# ---------------------------------------------------------------------- over the wire
@pytest.fixture
def gateway(demo_upstream: DemoUpstream, gateway_factory: Callable[..., GatewayProcess]) -> GatewayProcess:
    def route(name: str, config: dict[str, Any]) -> dict[str, Any]:
        return {"name": name, "paths": [f"/{name}"], "plugins": [{"name": "cors", "config": config}]}

    return gateway_factory(
        {
            "services": [
                {
                    "name": "svc",
                    "url": f"http://127.0.0.1:{demo_upstream.port}",
                    "routes": [
                        route("strict", STRICT),
                        route("open", {}),
                        route(
                            "continue", {"preflight_continue": True, "origins": ["https://app.example.com"]}
                        ),
                        route(
                            "absent", {"origins": ["https://app.example.com"], "allow_origin_absent": False}
                        ),
                    ],
                }
            ]
        }
    )


def preflight(origin: str, method: str = "POST", **headers: str) -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": method, **headers}


def test_preflight_is_answered_at_the_gateway(gateway: GatewayProcess, demo_upstream: DemoUpstream) -> None:
    with httpx.Client(base_url=gateway.url) as client:
        ok = client.options(
            "/strict",
            headers=preflight(
                "https://app.example.com", **{"Access-Control-Request-Private-Network": "true"}
            ),
        )
        by_regex = client.options("/strict", headers=preflight("https://api.example.org"))
        default_port = client.options("/strict", headers=preflight("https://app.example.com:443"))
        refused = client.options("/strict", headers=preflight("https://evil.example"))
        look_alike = client.options("/strict", headers=preflight("https://example.org.evil.example"))
    assert demo_upstream.requests == 0  # no preflight reached the upstream
    assert ok.status_code == 200
    assert ok.content == b""
    assert ok.headers["access-control-allow-origin"] == "https://app.example.com"
    assert ok.headers["access-control-allow-credentials"] == "true"
    assert ok.headers["access-control-allow-headers"] == "X-Token,Content-Type"
    assert ok.headers["access-control-allow-methods"] == "GET,POST"
    assert ok.headers["access-control-max-age"] == "600"
    assert ok.headers["access-control-allow-private-network"] == "true"
    assert ok.headers["vary"] == "Origin"
    assert by_regex.headers["access-control-allow-origin"] == "https://api.example.org"
    assert "access-control-allow-private-network" not in by_regex.headers  # not requested
    assert default_port.headers["access-control-allow-origin"] == "https://app.example.com"
    for answer in (refused, look_alike):
        assert answer.status_code == 200
        assert "access-control-allow-origin" not in answer.headers


def test_open_config_allows_any_origin(gateway: GatewayProcess, demo_upstream: DemoUpstream) -> None:
    with httpx.Client(base_url=gateway.url) as client:
        pre = client.options(
            "/open",
            headers=preflight("https://x.example", "PUT", **{"Access-Control-Request-Headers": "X-A, X-B"}),
        )
        actual = client.get("/open", headers={"Origin": "https://x.example"})
        no_origin = client.get("/open")
        not_preflight = client.options("/open", headers={"Origin": "https://x.example"})
    assert pre.headers["access-control-allow-origin"] == "*"
    assert pre.headers["access-control-allow-headers"] == "X-A, X-B"  # echoed when not configured
    assert pre.headers["access-control-allow-methods"] == ",".join(ALL_METHODS)
    assert "vary" not in pre.headers
    assert "access-control-max-age" not in pre.headers
    assert actual.status_code == 200
    assert actual.headers["access-control-allow-origin"] == "*"
    assert no_origin.headers["access-control-allow-origin"] == "*"  # allow_origin_absent: true
    assert not_preflight.json()["method"] == "OPTIONS"  # no Access-Control-Request-Method: proxied
    assert demo_upstream.requests == 3


def test_actual_requests_get_cors_headers(gateway: GatewayProcess, demo_upstream: DemoUpstream) -> None:
    with httpx.Client(base_url=gateway.url) as client:
        allowed = client.post("/strict", headers={"Origin": "http://localhost:3000"}, json={"a": 1})
        refused = client.get("/strict", headers={"Origin": "http://localhost:3001"})
    assert allowed.json()["method"] == "POST"
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert allowed.headers["access-control-expose-headers"] == "X-Total,X-Page"
    assert allowed.headers["vary"] == "Origin"
    assert "access-control-allow-methods" not in allowed.headers  # preflight only
    assert "access-control-allow-origin" not in refused.headers
    assert refused.headers["vary"] == "Origin"
    assert demo_upstream.requests == 2


def test_preflight_continue_proxies_and_adds_nothing(
    gateway: GatewayProcess, demo_upstream: DemoUpstream
) -> None:
    with httpx.Client(base_url=gateway.url) as client:
        answer = client.options("/continue", headers=preflight("https://app.example.com"))
    assert answer.json()["method"] == "OPTIONS"
    assert demo_upstream.requests == 1
    assert "access-control-allow-origin" not in answer.headers


def test_allow_origin_absent_false(gateway: GatewayProcess) -> None:
    with httpx.Client(base_url=gateway.url) as client:
        without = client.get("/absent")
        with_origin = client.get("/absent", headers={"Origin": "https://app.example.com"})
    assert "access-control-allow-origin" not in without.headers
    assert "vary" not in without.headers
    assert with_origin.headers["access-control-allow-origin"] == "https://app.example.com"
