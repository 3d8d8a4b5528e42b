"""`acl`: schema (Kong's allow/deny rules, Forecourt's scopes) and behaviour over real sockets."""

# Exact expected messages read best on one line each.
# ruff: noqa: E501

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import jwt as pyjwt
import pytest

from forecourt.config import ConfigError, parse_config
from forecourt.plan.build import PlanBuilder
from forecourt.plugins.acl import AclConfig
from tests.support.gateway import GatewayProcess
from tests.support.upstreams import DemoUpstream

SECRET = "acl-test-secret-" + "k" * 48


def test_defaults() -> None:
    config = AclConfig(allow=("a",))
    assert config.deny is None
    assert config.hide_groups_header is False
    assert config.include_consumer_groups is False
    assert config.always_use_authenticated_groups is False
    assert (config.scopes_claim, config.required_scopes, config.scopes_match) == ("scope", (), "all")


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            {},
            "plugins[0].config: at least one of these fields must be non-empty: 'allow', 'deny', 'required_scopes'",
        ),
        (
            {"allow": ["a"], "deny": ["b"]},
            "plugins[0].config: only one of these fields can be set: 'allow', 'deny'",
        ),
        ({"allow": []}, "plugins[0].config.allow"),
        ({"allow": ["a"], "include_consumer_groups": True}, "include_consumer_groups: not supported"),
        ({"whitelist": ["a"]}, 'plugins[0].config.whitelist: unknown field "whitelist"'),
        (
            {"required_scopes": ["read"], "scopes_match": "some"},
            "plugins[0].config.scopes_match: expected 'all' or 'any'",
        ),
    ],
)
def test_bad_config_is_a_clear_error(config: dict[str, Any], expected: str) -> None:
    builder = PlanBuilder()
    text = json.dumps({"plugins": [{"name": "acl", "config": config}]})
    with pytest.raises(ConfigError) as caught:
        builder.validate(parse_config(text, "gw.yaml", builder.registry))
    assert any(expected in str(issue) for issue in caught.value.issues), caught.value.issues


@pytest.fixture(scope="module")
def upstream() -> Iterator[DemoUpstream]:
    demo = DemoUpstream("upstream").start()
    yield demo
    demo.stop()


def _route(name: str, auth: dict[str, Any], acl: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "paths": [f"/{name}"],
        "plugins": [auth, {"name": "acl", "config": acl}],
    }


KEY_AUTH = {"name": "key-auth"}
JWT = {"name": "jwt", "config": {"authenticated_groups_claim": "realm.roles"}}


@pytest.fixture(scope="module")
def gateway(upstream: DemoUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    config = {
        "services": [
            {
                "name": "svc",
                "url": f"http://127.0.0.1:{upstream.port}",
                "routes": [
                    _route("admins", KEY_AUTH, {"allow": ["admins"]}),
                    _route("no-banned", KEY_AUTH, {"deny": ["banned"]}),
                    _route("hidden", KEY_AUTH, {"allow": ["admins"], "hide_groups_header": True}),
                    _route(
                        "anon", {"name": "key-auth", "config": {"anonymous": "guest"}}, {"allow": ["admins"]}
                    ),
                    _route("scoped", JWT, {"required_scopes": ["orders:read", "orders:write"]}),
                    _route(
                        "any-scope", JWT, {"required_scopes": ["a", "orders:read"], "scopes_match": "any"}
                    ),
                    _route("roles", JWT, {"allow": ["ops"], "scopes_claim": "scp", "required_scopes": ["x"]}),
                    _route("token-groups", JWT, {"allow": ["ops"], "always_use_authenticated_groups": True}),
                    {
                        "name": "bare",
                        "paths": ["/bare"],
                        "plugins": [{"name": "acl", "config": {"allow": ["x"]}}],
                    },
                ],
            }
        ],
        "consumers": [
            {
                "username": "ada",
                "keyauth_credentials": [{"key": "ada-key"}],
                "jwt_secrets": [{"key": "ada-iss", "secret": SECRET}],
                "acls": [{"group": "admins"}, {"group": "dev"}],
            },
            {"username": "ben", "keyauth_credentials": [{"key": "ben-key"}], "acls": [{"group": "banned"}]},
            {"username": "guest"},
        ],
        "acls": [{"consumer": "guest", "group": "visitors"}],
    }
    process = GatewayProcess(config, tmp_path_factory.mktemp("acl")).start()
    yield process
    process.stop()


@pytest.fixture
def client(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url) as http:
        yield http


def bearer(**claims: Any) -> dict[str, str]:
    return {"Authorization": "Bearer " + pyjwt.encode({"iss": "ada-iss", **claims}, SECRET)}


def test_allow_list(client: httpx.Client) -> None:
    ok = client.get("/admins", headers={"apikey": "ada-key", "X-Consumer-Groups": "spoofed"})
    assert ok.status_code == 200
    assert ok.json()["headers"]["x-consumer-groups"] == "admins, dev"
    refused = client.get("/admins", headers={"apikey": "ben-key"})
    assert (refused.status_code, refused.json()["message"]) == (403, "You cannot consume this service")
    assert refused.json()["request_id"] == refused.headers["x-forecourt-request-id"]


def test_deny_list(client: httpx.Client) -> None:
    assert client.get("/no-banned", headers={"apikey": "ada-key"}).status_code == 200
    assert client.get("/no-banned", headers={"apikey": "ben-key"}).status_code == 403


def test_hide_groups_header(client: httpx.Client) -> None:
    answer = client.get("/hidden", headers={"apikey": "ada-key"})
    assert answer.status_code == 200
    assert "x-consumer-groups" not in answer.json()["headers"]


def test_anonymous_consumer_uses_its_own_groups(client: httpx.Client) -> None:
    assert client.get("/anon").status_code == 403  # guest is in "visitors" only
    assert client.get("/anon", headers={"apikey": "ada-key"}).status_code == 200


def test_no_consumer_is_401(client: httpx.Client) -> None:
    answer = client.get("/bare")
    assert (answer.status_code, answer.json()["message"]) == (401, "Unauthorized")


def test_required_scopes(client: httpx.Client) -> None:
    assert client.get("/scoped", headers=bearer(scope="orders:read orders:write profile")).status_code == 200
    short = client.get("/scoped", headers=bearer(scope="orders:read"))
    assert (short.status_code, short.json()["message"]) == (403, "insufficient_scope")
    assert (
        short.headers["www-authenticate"]
        == 'Bearer error="insufficient_scope", scope="orders:read orders:write"'
    )
    assert client.get("/scoped", headers=bearer()).status_code == 403
    assert client.get("/scoped", headers={"apikey": "ada-key"}).status_code == 401  # the route's auth is jwt
    assert client.get("/any-scope", headers=bearer(scope="orders:read")).status_code == 200


def test_roles_claim_list_and_groups_together(client: httpx.Client) -> None:
    token_groups = {"realm": {"roles": ["ops"]}}
    # Ada is authenticated by a credential: her consumer groups count, not the token's (Kong).
    assert client.get("/roles", headers=bearer(scp=["x"], **token_groups)).status_code == 403
    ok = client.get("/token-groups", headers=bearer(**token_groups))
    assert ok.status_code == 200
    assert ok.json()["headers"]["x-authenticated-groups"] == "ops"
    assert client.get("/token-groups", headers=bearer(realm={"roles": ["dev"]})).status_code == 403
