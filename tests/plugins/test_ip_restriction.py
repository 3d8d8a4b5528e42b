"""ip-restriction: schema, address matching (IPv4, IPv6, CIDR) and refusals on the wire."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from forecourt.plugins.ip_restriction import (
    AddressSet,
    IpRestrictionConfig,
    IpRestrictionPlugin,
    parse_address,
)
from tests.plugins.offloading_helpers import config_errors
from tests.support.gateway import GatewayProcess
from tests.support.upstreams import DemoUpstream


# ---------------------------------------------------------------------- schema
def test_defaults() -> None:
    config = IpRestrictionConfig(deny=["10.0.0.1"])
    assert (config.allow, config.status, config.message) == (None, None, None)
    assert IpRestrictionPlugin.priority == 990
    assert config_errors("ip-restriction", {"allow": ["10.0.0.0/8", "::1", "2001:db8::/32"]}) == []


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            None,
            "plugins[0].config: at least one of these fields must be non-empty: "
            "'config.allow', 'config.deny'",
        ),
        ({"allow": [], "deny": []}, "plugins[0].config: at least one of these fields must be non-empty"),
        ({"allow": ["10.0.0.0/33"]}, "plugins[0].config.allow: invalid ip or cidr range: '10.0.0.0/33'"),
        ({"deny": ["localhost"]}, "plugins[0].config.deny: invalid ip or cidr range: 'localhost'"),
        ({"deny": ["10.0.0.1"], "status": 700}, "plugins[0].config.status: must be at most 599"),
        (
            {"deny": ["10.0.0.1"], "whitelist": ["10.0.0.1"]},
            'plugins[0].config.whitelist: unknown field "whitelist"',
        ),
    ],
)
def test_bad_values_are_refused_clearly(config: dict[str, Any] | None, message: str) -> None:
    errors = config_errors("ip-restriction", config)
    assert len(errors) == 1, errors
    assert errors[0].startswith(message), errors


def test_address_sets() -> None:
    networks = [
        ipaddress.ip_network(n, strict=False) for n in ("10.1.2.3/16", "192.168.0.7", "2001:db8::/32")
    ]
    allowed = AddressSet(networks)
    member = {
        "10.1.255.255": True,
        "10.2.0.0": False,
        "192.168.0.7": True,
        "192.168.0.8": False,
        "2001:db8::1": True,
        "2001:db9::1": False,
        "::ffff:10.1.0.1": True,  # IPv4-mapped, from a dual-stack listener
    }
    for text, expected in member.items():
        address = parse_address(text)
        assert address is not None
        assert (address in allowed) is expected, text
    assert parse_address("not-an-ip") is None
    assert not AddressSet([])


# ---------------------------------------------------------------------- over the wire
def _config(port: int) -> dict[str, Any]:
    def route(name: str, config: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": name,
            "paths": [f"/{name}"],
            "plugins": [{"name": "ip-restriction", "config": config}],
        }

    return {
        "services": [
            {
                "name": "svc",
                "url": f"http://127.0.0.1:{port}",
                "routes": [
                    route("deny-local", {"deny": ["127.0.0.0/8"]}),
                    route(
                        "allow-other",
                        {"allow": ["10.0.0.0/8", "2001:db8::/32"], "status": 401, "message": "go away"},
                    ),
                    route("allow-local", {"allow": ["127.0.0.1", "::1"], "deny": ["127.0.0.2"]}),
                    route("deny-wins", {"allow": ["127.0.0.0/8"], "deny": ["127.0.0.1"]}),
                    route("allow-forwarded", {"allow": ["203.0.113.0/24"]}),
                ],
            }
        ]
    }


def test_refusals_use_kongs_status_and_message(
    demo_upstream: DemoUpstream, gateway_factory: Callable[..., GatewayProcess]
) -> None:
    gateway = gateway_factory(_config(demo_upstream.port))
    with httpx.Client(base_url=gateway.url) as client:
        denied = client.get("/deny-local")
        custom = client.get("/allow-other")
        allowed = client.get("/allow-local")
        deny_wins = client.get("/deny-wins")
        # Without trusted proxies a client cannot pick its address with X-Forwarded-For.
        spoofed = client.get("/allow-forwarded", headers={"X-Forwarded-For": "203.0.113.9"})
    assert denied.status_code == 403
    assert denied.json() == {
        "message": "IP address not allowed: 127.0.0.1",
        "request_id": denied.headers["x-forecourt-request-id"],
    }
    assert custom.status_code == 401
    assert custom.json()["message"] == "go away"
    assert allowed.status_code == 200
    assert allowed.json()["headers"]["x-forwarded-path"] == "/allow-local"
    assert deny_wins.status_code == 403
    assert spoofed.status_code == 403
    assert demo_upstream.requests == 1  # only the allowed request reached the upstream


def test_behind_trusted_proxies_the_forwarded_client_is_checked(
    demo_upstream: DemoUpstream, gateway_factory: Callable[..., GatewayProcess]
) -> None:
    gateway = gateway_factory(_config(demo_upstream.port), "--trusted-ips", "127.0.0.1/32")
    with httpx.Client(base_url=gateway.url) as client:
        forwarded = client.get("/allow-forwarded", headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.9"})
        outside = client.get("/allow-forwarded", headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.1"})
        direct = client.get("/allow-forwarded")
    assert forwarded.status_code == 200  # the right-most untrusted hop is the client
    assert outside.status_code == 403
    assert outside.json()["message"] == "IP address not allowed: 198.51.100.1"
    assert direct.status_code == 403
    assert direct.json()["message"] == "IP address not allowed: 127.0.0.1"
