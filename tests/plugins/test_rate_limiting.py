"""`rate-limiting`: Kong's schema, and behaviour over the wire against both policies.

Behaviour tests run a real `forecourt run` in front of the demo upstream, once with policy `local`
and once with policy `redis` against a real `redis-server` started here, including two gateway
nodes sharing one Redis under a burst of concurrent requests, and Redis crashing mid-test.
"""

from __future__ import annotations

import asyncio
import calendar
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from forecourt.plugins.rate_limiting import ClientAddress, RateLimitingConfig, window_bounds
from tests.conftest import single_service
from tests.support.gateway import GatewayProcess
from tests.support.redis_server import RedisServer, running_redis
from tests.support.upstreams import DemoUpstream, RecordingUpstream, respond_with

Factory = Callable[..., GatewayProcess]


# ---------------------------------------------------------------------- schema
def errors_of(config: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        RateLimitingConfig.model_validate(config)
    return str(info.value)


def test_defaults_are_kongs() -> None:
    config = RateLimitingConfig.model_validate({"minute": 5})
    assert config.limit_by == "consumer"
    assert config.policy == "local"
    assert config.fault_tolerant is True
    assert config.hide_client_headers is False
    assert config.error_code == 429
    assert config.error_message == "API rate limit exceeded"
    assert config.sync_rate == -1
    assert (config.redis.port, config.redis.timeout, config.redis.database) == (6379, 2000, 0)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "at least one of these fields must be non-empty: 'config.second'"),
        (
            {"second": 10, "minute": 5},
            "The limit for minute(5.0) cannot be lower than the limit for second(10.0)",
        ),
        ({"minute": 0}, "greater than 0"),
        ({"minute": 5, "policy": "cluster"}, "policy 'cluster' keeps counters in Kong's database"),
        ({"minute": 5, "policy": "bogus"}, "policy"),
        ({"minute": 5, "sync_rate": 1}, "sync_rate can only be used with the redis policy"),
        ({"minute": 5, "policy": "redis", "sync_rate": 0.01}, "sync_rate must be greater than 0.02"),
        ({"minute": 5, "limit_by": "header"}, "config.header_name is required"),
        ({"minute": 5, "limit_by": "path"}, "config.path is required"),
        ({"minute": 5, "limit_by": "path", "path": "x"}, "should start with: /"),
        ({"minute": 5, "limit_by": "nothing"}, "limit_by"),
        ({"minute": 5, "redis_host": "a", "redis": {"host": "b"}}, "disagree"),
        ({"minute": 5, "policy": "redis", "redis": {"host": "r", "database": -1}}, "greater than or equal"),
        ({"minute": 5, "no_such_field": 1}, "no_such_field"),
    ],
)
def test_invalid_configs(config: dict[str, Any], message: str) -> None:
    assert message in errors_of(config)


def test_deprecated_flat_redis_fields_fill_the_redis_record() -> None:
    config = RateLimitingConfig.model_validate(
        {"hour": 1, "policy": "redis", "redis_host": "r", "redis_port": 6380, "redis_timeout": 50}
    )
    assert (config.redis.host, config.redis.port, config.redis.timeout) == ("r", 6380, 50)


def test_policy_redis_without_a_host_is_a_config_error(tmp_path: Path) -> None:
    from forecourt.cli import main

    path = tmp_path / "gw.yaml"
    path.write_text(
        "services:\n- name: s\n  url: http://127.0.0.1:1\n  plugins:\n"
        "  - name: rate-limiting\n    config: {minute: 5, policy: redis}\n"
    )
    assert main(["check", str(path)]) == 1


# ---------------------------------------------------------------------- client address and windows
TRUSTED = ClientAddress(["10.0.0.0/8", "::1"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("203.0.113.9", ["1.1.1.1"], "203.0.113.9"),  # untrusted peer: the header is ignored
        ("10.0.0.2", [], "10.0.0.2"),
        ("10.0.0.2", ["198.51.100.7"], "198.51.100.7"),
        ("10.0.0.2", ["6.6.6.6, 198.51.100.7"], "198.51.100.7"),  # a spoofed left part is skipped
        ("10.0.0.2", ["6.6.6.6", "198.51.100.7, 10.1.1.1"], "198.51.100.7"),  # proxies chained
        ("10.0.0.2", ["10.3.3.3, 10.1.1.1"], "10.3.3.3"),  # only proxies: the farthest one
        ("10.0.0.2", ["garbage, 10.1.1.1"], "10.1.1.1"),  # unreadable: stop at the last proxy
        ("::1", ["2001:db8::1"], "2001:db8::1"),
    ],
)
def test_client_address(peer: str, forwarded: list[str], client: str) -> None:
    assert TRUSTED.resolve(peer, [v.encode() for v in forwarded]) == client


def utc(*date: int) -> int:
    return calendar.timegm((*date, 0, 0, 0)[:6])


def test_windows_are_aligned_to_their_period_in_utc() -> None:
    now = utc(2024, 2, 29, 13, 45, 30)
    assert window_bounds("second", now) == (now, now + 1)
    assert window_bounds("minute", now) == (now - 30, now + 30)
    assert window_bounds("hour", now) == (now - 45 * 60 - 30, now + 14 * 60 + 30)
    assert window_bounds("day", now) == (utc(2024, 2, 29), utc(2024, 3, 1))
    assert window_bounds("month", now) == (utc(2024, 2, 1), utc(2024, 3, 1))
    assert window_bounds("month", utc(2024, 12, 31, 23)) == (utc(2024, 12, 1), utc(2025, 1, 1))
    assert window_bounds("year", now) == (utc(2024, 1, 1), utc(2025, 1, 1))


# ---------------------------------------------------------------------- over the wire
@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    workdir = tmp_path / "redis"
    workdir.mkdir()
    with running_redis(workdir) as server:
        yield server


@pytest.fixture(params=["local", "redis"])
def policy(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Config fields selecting each policy (a fresh redis-server for `redis`)."""
    if request.param == "local":
        yield {"policy": "local"}
        return
    workdir = tmp_path / "redis"
    workdir.mkdir()
    with running_redis(workdir) as server:
        yield {"policy": "redis", "redis": {"host": "127.0.0.1", "port": server.port, "timeout": 500}}


def gateway_config(
    upstream: DemoUpstream, *plugins: dict[str, Any], **routes: list[dict[str, Any]]
) -> dict[str, Any]:
    """One service with route `r` on `/` plus any routes given as name → route plugins."""
    route_list: list[dict[str, Any]] = [{"name": "r", "paths": ["/"]}]
    for name, route_plugins in routes.items():
        route_list.append({"name": name, "paths": [f"/{name}"], "plugins": route_plugins})
    return {
        "_format_version": "3.0",
        "services": [
            {
                "name": "svc",
                "url": f"http://127.0.0.1:{upstream.port}",
                "routes": route_list,
                "plugins": list(plugins),
            }
        ],
    }


def rate_limiting(**config: Any) -> dict[str, Any]:
    return {"name": "rate-limiting", "config": config}


def test_headers_and_429(
    demo_upstream: DemoUpstream, gateway_factory: Factory, policy: dict[str, Any]
) -> None:
    gateway = gateway_factory(
        gateway_config(demo_upstream, rate_limiting(minute=3, hour=5, limit_by="ip", **policy))
    )
    with httpx.Client(base_url=gateway.url) as client:
        for remaining in (2, 1, 0):
            ok = client.get("/anything")
            assert ok.status_code == 200
            assert ok.headers["x-ratelimit-limit-minute"] == "3"
            assert ok.headers["x-ratelimit-remaining-minute"] == str(remaining)
            assert ok.headers["x-ratelimit-limit-hour"] == "5"
            assert ok.headers["x-ratelimit-remaining-hour"] == str(remaining + 2)
            assert ok.headers["ratelimit-limit"] == "3"  # the minute has the fewest left
            assert ok.headers["ratelimit-remaining"] == str(remaining)
            assert 1 <= int(ok.headers["ratelimit-reset"]) <= 60
        upstream_seen = demo_upstream.requests
        refused = client.get("/anything")
        assert refused.status_code == 429
        assert refused.json() == {
            "message": "API rate limit exceeded",
            "request_id": refused.headers["x-forecourt-request-id"],
        }
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.headers["retry-after"] == refused.headers["ratelimit-reset"]
        assert refused.headers["x-ratelimit-remaining-minute"] == "0"
        assert refused.headers["x-ratelimit-remaining-hour"] == "2"  # refused requests count nowhere
        assert demo_upstream.requests == upstream_seen  # the upstream never saw it


def test_hidden_headers_and_custom_error(
    demo_upstream: DemoUpstream, gateway_factory: Factory, policy: dict[str, Any]
) -> None:
    plugin = rate_limiting(
        hour=1, limit_by="ip", hide_client_headers=True, error_code=503, error_message="slow down", **policy
    )
    gateway = gateway_factory(gateway_config(demo_upstream, plugin))
    with httpx.Client(base_url=gateway.url) as client:
        ok = client.get("/")
        assert ok.status_code == 200
        assert not [h for h in ok.headers if "ratelimit" in h]
        refused = client.get("/")
        assert refused.status_code == 503
        assert refused.json()["message"] == "slow down"
        assert int(refused.headers["retry-after"]) >= 1
        assert not [h for h in refused.headers if "ratelimit" in h]


def test_limit_by_header_path_and_service(
    demo_upstream: DemoUpstream, gateway_factory: Factory, policy: dict[str, Any]
) -> None:
    config = gateway_config(
        demo_upstream,
        rate_limiting(hour=1, limit_by="header", header_name="X-Tenant", **policy),
        by_path=[rate_limiting(hour=1, limit_by="path", path="/by_path/one", **policy)],
        by_service=[rate_limiting(hour=2, limit_by="service", **policy)],
    )
    gateway = gateway_factory(config)
    with httpx.Client(base_url=gateway.url) as client:
        # header: one counter per value; without the header, the client IP's
        assert client.get("/", headers={"X-Tenant": "a"}).status_code == 200
        assert client.get("/", headers={"X-Tenant": "a"}).status_code == 429
        assert client.get("/", headers={"X-Tenant": "b"}).status_code == 200
        assert client.get("/").status_code == 200
        assert client.get("/").status_code == 429
        # path: the configured path has its own counter; other paths fall back to the IP
        assert client.get("/by_path/one").status_code == 200
        assert client.get("/by_path/one").status_code == 429
        assert client.get("/by_path/two").status_code == 200
        assert client.get("/by_path/three").status_code == 429
        # service: every client shares the service's counter
        assert client.get("/by_service", headers={"X-Forwarded-For": "1.2.3.4"}).status_code == 200
        assert client.get("/by_service", headers={"X-Tenant": "z"}).status_code == 200
        assert client.get("/by_service").status_code == 429


def test_limit_by_consumer_and_credential(
    demo_upstream: DemoUpstream, gateway_factory: Factory, policy: dict[str, Any]
) -> None:
    stub = {"name": "tests.plugins.consumer_stub:ConsumerStub"}
    config = gateway_config(
        demo_upstream,
        stub,
        rate_limiting(hour=1, **policy),  # limit_by consumer (the default)
        by_credential=[rate_limiting(hour=1, limit_by="credential", **policy)],
    )
    gateway = gateway_factory(config)
    with httpx.Client(base_url=gateway.url) as client:
        alice, bob = {"X-Test-Consumer": "alice"}, {"X-Test-Consumer": "bob"}
        assert client.get("/", headers=alice).status_code == 200
        assert client.get("/", headers=alice).status_code == 429
        assert client.get("/", headers=bob).status_code == 200
        assert client.get("/").status_code == 200  # anonymous: the client IP
        assert client.get("/").status_code == 429
        key1 = {"X-Test-Consumer": "carol", "X-Test-Credential": "key-1"}
        key2 = {"X-Test-Consumer": "carol", "X-Test-Credential": "key-2"}
        assert client.get("/by_credential", headers=key1).status_code == 200
        assert client.get("/by_credential", headers=key1).status_code == 429
        assert client.get("/by_credential", headers=key2).status_code == 200


def test_spoofed_forwarded_for_never_escapes_a_limit(
    demo_upstream: DemoUpstream, gateway_factory: Factory, policy: dict[str, Any]
) -> None:
    config = gateway_config(demo_upstream, rate_limiting(hour=2, limit_by="ip", **policy))
    untrusted = gateway_factory(config)
    with httpx.Client(base_url=untrusted.url) as client:
        statuses = [client.get("/", headers={"X-Forwarded-For": f"9.9.9.{i}"}).status_code for i in range(4)]
    assert statuses == [200, 200, 429, 429]  # the socket peer counts, not the header

    # Behind a trusted proxy (127.0.0.1 here) the right-most untrusted address is the client.
    trusted = gateway_factory(config, "--trusted-ips", "127.0.0.0/8,10.0.0.0/8")
    with httpx.Client(base_url=trusted.url) as client:
        real = "198.51.100.7"
        spoofs = [f"{i}.{i}.{i}.{i}, {real}" for i in range(1, 4)]  # the client prepends garbage
        statuses = [client.get("/", headers={"X-Forwarded-For": s}).status_code for s in spoofs]
        assert statuses == [200, 200, 429]
        via_proxies = client.get("/", headers={"X-Forwarded-For": f"{real}, 10.0.0.5"})
        assert via_proxies.status_code == 429
        other = client.get("/", headers={"X-Forwarded-For": "198.51.100.8"})
        assert other.status_code == 200


# ---------------------------------------------------------------------- concurrency
async def _burst(urls: list[str], total: int, headers: dict[str, str]) -> list[int]:
    limits = httpx.Limits(max_connections=250, max_keepalive_connections=250)
    clients = [httpx.AsyncClient(base_url=url, limits=limits, timeout=30) for url in urls]
    try:
        responses = await asyncio.gather(
            *(clients[i % len(clients)].get("/", headers=headers) for i in range(total))
        )
        return [r.status_code for r in responses]
    finally:
        for client in clients:
            await client.aclose()


def burst_in_one_hour(urls: list[str], total: int) -> list[int]:
    """`total` concurrent requests spread over `urls`, with a fresh identifier; redone if the
    burst straddled the turn of an hour (a new window would rightly let more through)."""
    for attempt in range(3):
        hour = int(time.time()) // 3600
        statuses = asyncio.run(_burst(urls, total, {"X-Tenant": f"burst-{time.time_ns()}-{attempt}"}))
        if int(time.time()) // 3600 == hour:
            return statuses
    raise AssertionError("could not stay within one hour")


def test_two_nodes_sharing_redis_let_exactly_the_limit_through(
    demo_upstream: DemoUpstream, gateway_factory: Factory, redis_server: RedisServer
) -> None:
    plugin = rate_limiting(
        hour=50,
        limit_by="header",
        header_name="X-Tenant",
        policy="redis",
        redis={"host": "127.0.0.1", "port": redis_server.port},
    )
    config = gateway_config(demo_upstream, plugin)
    nodes = [gateway_factory(config), gateway_factory(config)]
    statuses = burst_in_one_hour([n.url for n in nodes], 500)
    assert statuses.count(200) == 50
    assert statuses.count(429) == 450


def test_local_policy_is_exact_across_workers(demo_upstream: DemoUpstream, gateway_factory: Factory) -> None:
    config = gateway_config(demo_upstream, rate_limiting(hour=50, limit_by="header", header_name="X-Tenant"))
    gateway = gateway_factory(config, "--workers", "2", "--admin-listen", "off")
    statuses = burst_in_one_hour([gateway.url], 300)
    assert statuses.count(200) == 50
    assert statuses.count(429) == 250


# ---------------------------------------------------------------------- Redis failures
def test_redis_down_fault_tolerance_and_recovery(
    demo_upstream: DemoUpstream, gateway_factory: Factory, redis_server: RedisServer
) -> None:
    redis = {"host": "127.0.0.1", "port": redis_server.port, "timeout": 300}
    config = gateway_config(
        demo_upstream,
        tolerant=[rate_limiting(hour=2, limit_by="ip", policy="redis", redis=redis, fault_tolerant=True)],
        strict=[rate_limiting(hour=2, limit_by="ip", policy="redis", redis=redis, fault_tolerant=False)],
    )
    gateway = gateway_factory(config)
    with httpx.Client(base_url=gateway.url) as client:
        assert client.get("/tolerant").headers["x-ratelimit-remaining-hour"] == "1"
        assert client.get("/strict").status_code == 200

        redis_server.kill()
        for _ in range(3):
            passed = client.get("/tolerant")
            assert passed.status_code == 200  # proxied, unlimited, without rate-limit headers
            assert "x-ratelimit-remaining-hour" not in passed.headers
            failed = client.get("/strict")
            assert failed.status_code == 500
            assert failed.json()["message"] == "An unexpected error occurred"
        assert "counter store failed" in gateway.stderr()

        redis_server.start()  # same port, empty: counting starts again, no gateway restart
        assert client.get("/tolerant").headers["x-ratelimit-remaining-hour"] == "1"
        assert client.get("/tolerant").status_code == 200
        assert client.get("/tolerant").status_code == 429
        assert client.get("/strict").status_code == 200
        assert client.get("/strict").status_code == 200
        assert client.get("/strict").status_code == 429


def test_the_upstreams_own_rate_limit_headers_are_replaced(gateway_factory: Factory) -> None:
    """An upstream that sends rate-limit headers of its own gets them replaced by the gateway's
    (Kong sets the headers), and the rest of its head is kept."""
    answer = (
        b"HTTP/1.1 200 OK\r\nX-RateLimit-Limit-Minute: 999\r\nRateLimit-Remaining: 998\r\n"
        b"X-Kept: yes\r\nContent-Length: 2\r\n\r\nok"
    )
    upstream = RecordingUpstream(respond_with(answer)).start()
    try:
        config = single_service(upstream.port, plugins=[rate_limiting(minute=5)])
        gateway = gateway_factory(config)
        with httpx.Client(base_url=gateway.url) as client:
            resp = client.get("/x")
    finally:
        upstream.stop()
    assert resp.status_code == 200
    assert resp.headers.get_list("x-ratelimit-limit-minute") == ["5"]
    assert resp.headers.get_list("ratelimit-remaining") == ["4"]
    assert resp.headers["x-kept"] == "yes"
    assert resp.text == "ok"
