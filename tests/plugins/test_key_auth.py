"""`key-auth`: schema (defaults, bad values) and behaviour over real sockets."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from forecourt.config import ConfigError, parse_config
from forecourt.plan.build import PlanBuilder
from forecourt.plugins.key_auth import KeyAuthConfig
from tests.support.gateway import GatewayProcess
from tests.support.upstreams import DemoUpstream


def test_defaults_are_kongs() -> None:
    config = KeyAuthConfig()
    assert config.key_names == ("apikey",)
    assert config.hide_credentials is False
    assert config.anonymous is None
    assert (config.key_in_header, config.key_in_query, config.key_in_body) == (True, True, False)
    assert config.run_on_preflight is True
    assert config.realm is None


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"key_names": []}, "plugins[0].config.key_names"),
        ({"key_names": ["api key"]}, 'plugins[0].config.key_names[0]: invalid header name "api key"'),
        ({"hide_credentials": 1}, "plugins[0].config.hide_credentials: expected a boolean, got 1"),
        ({"key_in_cookie": True}, 'plugins[0].config.key_in_cookie: unknown field "key_in_cookie"'),
        ({"anonymous": "ghost"}, 'plugins[0].config: anonymous consumer "ghost" not found'),
    ],
)
def test_bad_config_is_a_clear_error(config: dict[str, Any], expected: str) -> None:
    builder = PlanBuilder()
    text = json.dumps({"plugins": [{"name": "key-auth", "config": config}]})
    with pytest.raises(ConfigError) as caught:
        builder.validate(parse_config(text, "gw.yaml", builder.registry))
    assert any(expected in str(issue) for issue in caught.value.issues), caught.value.issues


def test_config_model_is_strict() -> None:
    with pytest.raises(ValidationError):
        KeyAuthConfig.model_validate({"key_in_body": "true"})


@pytest.fixture(scope="module")
def upstream() -> Iterator[DemoUpstream]:
    demo = DemoUpstream("upstream").start()
    yield demo
    demo.stop()


def _route(name: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "paths": [f"/{name}"], "plugins": [{"name": "key-auth", "config": config or {}}]}


@pytest.fixture(scope="module")
def gateway(upstream: DemoUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    config = {
        "services": [
            {
                "name": "svc",
                "url": f"http://127.0.0.1:{upstream.port}",
                "routes": [
                    _route("plain"),
                    _route(
                        "hidden",
                        {"hide_credentials": True, "key_in_body": True, "key_names": ["apikey", "x-key"]},
                    ),
                    _route("anon", {"anonymous": "guest"}),
                    _route("headers-only", {"key_in_query": False, "realm": "orders"}),
                    _route("preflight", {"run_on_preflight": False}),
                ],
            }
        ],
        "consumers": [
            {
                "id": "0b5e9f0c-0d4e-4c39-9a63-1f0f8f2d7a10",
                "username": "alice",
                "custom_id": "c-alice",
                "keyauth_credentials": [{"key": "alice-key", "id": "6a4d6f8e-2b4f-4b0e-8a5e-9b1c2d3e4f50"}],
            },
            {"username": "guest"},
            {"username": "temp", "keyauth_credentials": [{"key": "short-lived", "ttl": 1}]},
        ],
        "keyauth_credentials": [{"consumer": "alice", "key": "alice-second"}],
    }
    process = GatewayProcess(config, tmp_path_factory.mktemp("key-auth")).start()
    yield process
    process.stop()


@pytest.fixture
def client(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url) as http:
        yield http


def test_key_in_header_sets_kong_consumer_headers(client: httpx.Client) -> None:
    answer = client.get("/plain", headers={"apikey": "alice-key"})
    assert answer.status_code == 200
    headers = answer.json()["headers"]
    assert headers["x-consumer-id"] == "0b5e9f0c-0d4e-4c39-9a63-1f0f8f2d7a10"
    assert headers["x-consumer-username"] == "alice"
    assert headers["x-consumer-custom-id"] == "c-alice"
    assert (
        headers["x-credential-identifier"] == "6a4d6f8e-2b4f-4b0e-8a5e-9b1c2d3e4f50"
    )  # the id, never the key
    assert headers["apikey"] == "alice-key"  # hide_credentials defaults to false, as in Kong


def test_key_in_query_and_top_level_credential(client: httpx.Client) -> None:
    answer = client.get("/plain", params={"apikey": "alice-second", "q": "1"})
    assert answer.status_code == 200
    assert answer.json()["headers"]["x-consumer-username"] == "alice"
    assert "apikey=alice-second" in answer.json()["query"]


def test_kong_401s(client: httpx.Client) -> None:
    missing = client.get("/plain")
    assert (missing.status_code, missing.json()["message"]) == (401, "No API key found in request")
    assert missing.headers["www-authenticate"] == "Key"
    assert missing.json()["request_id"] == missing.headers["x-forecourt-request-id"]
    wrong = client.get("/plain", headers={"apikey": "nope"})
    assert (wrong.status_code, wrong.json()["message"]) == (401, "Unauthorized")
    assert wrong.headers["www-authenticate"] == "Key"
    duplicate = client.get("/plain?apikey=a&apikey=b")
    assert (duplicate.status_code, duplicate.json()["message"]) == (401, "Duplicate API key found")
    empty = client.get("/plain", headers={"apikey": ""})
    assert empty.json()["message"] == "No API key found in request"


def test_realm_and_query_disabled(client: httpx.Client) -> None:
    answer = client.get("/headers-only", params={"apikey": "alice-key"})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == 'Key realm="orders"'
    assert client.get("/headers-only", headers={"apikey": "alice-key"}).status_code == 200


def test_hide_credentials_strips_header_query_and_body(client: httpx.Client) -> None:
    by_header = client.get("/hidden", headers={"x-key": "alice-key", "apikey": "decoy"})
    assert by_header.status_code == 401  # apikey is looked at first, and "decoy" is no key
    by_header = client.get("/hidden", headers={"x-key": "alice-key"}, params={"keep": "1"})
    assert by_header.status_code == 200
    echoed = by_header.json()
    assert "x-key" not in echoed["headers"]
    assert echoed["query"] == "keep=1"
    by_query = client.get("/hidden", params={"a": "1", "apikey": "alice-key", "b": "2"}).json()
    assert by_query["query"] == "a=1&b=2"
    form = client.post("/hidden", data={"apikey": "alice-key", "other": "x"})
    assert form.status_code == 200
    assert form.json()["body"] == "other=x"
    as_json = client.post("/hidden", json={"apikey": "alice-key", "n": 1})
    assert as_json.status_code == 200
    assert json.loads(as_json.json()["body"]) == {"n": 1}
    multipart = client.post("/hidden", files={"apikey": (None, "alice-key"), "doc": ("a.txt", b"hello")})
    assert multipart.status_code == 200, multipart.text
    body = multipart.json()["body"]
    assert "alice-key" not in body and "hello" in body
    unreadable = client.post("/hidden", content=b"apikey=x", headers={"Content-Type": "text/plain"})
    assert (unreadable.status_code, unreadable.json()["message"]) == (400, "Cannot process request body")


def test_anonymous(client: httpx.Client) -> None:
    headers = client.get("/anon").json()["headers"]
    assert headers["x-consumer-username"] == "guest"
    assert headers["x-anonymous-consumer"] == "true"
    known = client.get("/anon", headers={"apikey": "alice-key"}).json()["headers"]
    assert known["x-consumer-username"] == "alice"
    assert "x-anonymous-consumer" not in known


def test_preflight(client: httpx.Client) -> None:
    assert client.options("/preflight").status_code == 200
    assert client.get("/preflight").status_code == 401


def test_ttl_expires_the_key(client: httpx.Client, gateway: GatewayProcess) -> None:
    # The key lives 1 s from the config load; the gateway has been up at least that long by now.
    deadline = time.monotonic() + 5
    while client.get("/plain", headers={"apikey": "short-lived"}).status_code == 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert client.get("/plain", headers={"apikey": "short-lived"}).json()["message"] == "Unauthorized"


def test_key_auth_and_jwt_as_logical_or(
    upstream: DemoUpstream, gateway_factory: Callable[..., GatewayProcess]
) -> None:
    """Two auth plugins with `anonymous`: either credential works, neither falls back to anonymous."""
    import jwt as pyjwt

    secret = "s" * 64
    config = {
        "services": [
            {
                "name": "svc",
                "url": f"http://127.0.0.1:{upstream.port}",
                "routes": [{"name": "r", "paths": ["/"]}],
                "plugins": [
                    {"name": "key-auth", "config": {"anonymous": "guest"}},
                    {"name": "jwt", "config": {"anonymous": "guest"}},
                ],
            }
        ],
        "consumers": [
            {"username": "kim", "keyauth_credentials": [{"key": "kim-key"}]},
            {"username": "jo", "jwt_secrets": [{"key": "jo-iss", "secret": secret}]},
            {"username": "guest"},
        ],
    }
    gateway = gateway_factory(config)
    with httpx.Client(base_url=gateway.url) as http:
        by_jwt = http.get("/", headers={"Authorization": "Bearer " + pyjwt.encode({"iss": "jo-iss"}, secret)})
        assert by_jwt.json()["headers"]["x-consumer-username"] == "jo"
        by_key = http.get("/", headers={"apikey": "kim-key"})
        assert by_key.json()["headers"]["x-consumer-username"] == "kim"
        assert http.get("/").json()["headers"]["x-consumer-username"] == "guest"
