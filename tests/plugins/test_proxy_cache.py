"""`proxy-cache`: Kong's schema, and behaviour over the wire with a real `forecourt run`.

Upstreams: the demo echo service (`DemoUpstream`, counts requests, `/delay/<ms>`) and a scripted
one (`ScriptedUpstream`, answers with headers a test chooses). Redis tests run a real
`redis-server`. Unit tests of keys, policy, stores and coalescing live in `tests/plugins/proxy_cache/`.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from forecourt.pipeline import PluginEnv, PluginScope
from forecourt.plugins.proxy_cache import ProxyCacheConfig, ProxyCachePlugin
from forecourt.plugins.proxy_cache.key import cache_key, key_prefix
from tests.support.gateway import GatewayProcess
from tests.support.net import free_port
from tests.support.redis_server import RedisServer, running_redis
from tests.support.upstreams import DemoUpstream, RecordingUpstream

Factory = Callable[..., GatewayProcess]
Reply = tuple[int, list[tuple[str, str]], bytes]


# ---------------------------------------------------------------------- helpers
class ScriptedUpstream:
    """A raw upstream whose answer per request comes from `reply(method, path, headers)`."""

    def __init__(self, reply: Callable[[str, str, dict[str, str]], Reply]) -> None:
        self.reply = reply
        self.requests = 0
        self._lock = threading.Lock()
        self.upstream = RecordingUpstream(self._behave)

    def _behave(self, sock: socket.socket, received: bytes) -> bool:
        end = received.find(b"\r\n\r\n")
        if end < 0:
            return False
        lines = received[:end].decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        with self._lock:
            self.requests += 1
        status, extra, body = self.reply(method, target, headers)
        head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}"]
        head += [f"{name}: {value}" for name, value in extra]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        return True

    @property
    def port(self) -> int:
        return self.upstream.port

    def __enter__(self) -> ScriptedUpstream:
        self.upstream.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.upstream.stop()


def json_reply(*headers: tuple[str, str], body: bytes = b'{"ok":true}', status: int = 200) -> Reply:
    return status, [("Content-Type", "application/json"), *headers], body


def cached_gateway(
    factory: Factory, port: int, config: dict[str, Any] | None = None, *args: str
) -> GatewayProcess:
    plugin = {"name": "proxy-cache", "config": {"strategy": "memory", **(config or {})}}
    service = {
        "name": "svc",
        "url": f"http://127.0.0.1:{port}",
        "routes": [{"name": "r", "paths": ["/"]}],
    }
    return factory({"_format_version": "3.0", "services": [service], "plugins": [plugin]}, *args)


def get(gateway: GatewayProcess, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(gateway.url + path, timeout=10, **kwargs)


def status(response: httpx.Response) -> str | None:
    value: str | None = response.headers.get("x-cache-status")
    return value


# ---------------------------------------------------------------------- schema
def test_defaults_are_kongs() -> None:
    config = ProxyCacheConfig.model_validate({"strategy": "memory"})
    assert config.response_code == (200, 301, 404)
    assert config.request_method == ("GET", "HEAD")
    assert config.content_type == ("text/plain", "application/json")
    assert config.cache_ttl == 300
    assert config.cache_control is False
    assert config.ignore_uri_case is False
    assert config.storage_ttl is None
    assert config.memory.dictionary_name == "kong_db_cache"
    assert config.vary_query_params is None and config.vary_headers is None
    assert config.response_headers.model_dump() == {"age": True, "X-Cache-Status": True, "X-Cache-Key": True}
    # Forecourt's additions default to Kong's behaviour where Kong has one, and to safety otherwise.
    assert ProxyCacheConfig.model_validate({}).strategy == "memory"
    assert config.cache_authorized is False
    assert config.stale_if_error == 0
    assert config.coalesce is True


def test_priority_is_kongs() -> None:
    assert ProxyCachePlugin.priority == 100
    assert ProxyCachePlugin.name == "proxy-cache"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"response_code": []}, "response_code"),
        ({"response_code": [99]}, "greater than or equal to 100"),
        ({"request_method": ["DELETE"]}, "request_method"),
        ({"cache_ttl": 0}, "greater than 0"),
        ({"strategy": "disk"}, "strategy"),
        ({"content_type": ["json"]}, "invalid media type 'json'"),
        ({"vary_headers": ["bad name"]}, "invalid header name"),
        ({"cache_authorized": True}, "cache_authorized"),
        ({"response_headers": {"x_cache_status": False}}, "x_cache_status"),
        ({"memory": {"max_bytes": 10}}, "max_bytes"),
        ({"no_such_field": 1}, "no_such_field"),
    ],
)
def test_invalid_configs(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        ProxyCacheConfig.model_validate(config)
    assert message in str(info.value)


def test_redis_strategy_needs_a_host() -> None:
    config = ProxyCacheConfig.model_validate({"strategy": "redis"})
    with pytest.raises(ValueError, match=r"needs config\.redis\.host"):
        ProxyCachePlugin(config, PluginScope(), PluginEnv())
    ProxyCachePlugin(config, PluginScope(), PluginEnv(redis_url="redis://127.0.0.1:1/0"))


def test_check_reports_a_redis_strategy_without_host(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text("_format_version: '3.0'\nplugins:\n- name: proxy-cache\n  config:\n    strategy: redis\n")
    result = subprocess.run(
        [sys.executable, "-m", "forecourt.cli", "check", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert (
        f"{path}:4: plugins[0].config: strategy 'redis' needs config.redis.host"
        in result.stdout + result.stderr
    )


# ---------------------------------------------------------------------- basics over the wire
def test_miss_then_hit_with_kong_headers(gateway_factory: Factory, demo_upstream: DemoUpstream) -> None:
    gateway = cached_gateway(gateway_factory, demo_upstream.port)
    first = get(gateway, "/things?b=2&a=1")
    assert first.status_code == 200
    assert status(first) == "Miss"
    key = first.headers["x-cache-key"]
    assert key == cache_key(key_prefix(None, "r"), "GET", "/things", b"?b=2&a=1", [], None, None)
    assert "age" not in first.headers
    second = get(gateway, "/things?a=1&b=2")  # same parameters, other order: same key
    assert status(second) == "Hit"
    assert second.headers["x-cache-key"] == key
    assert int(second.headers["age"]) >= 0
    assert second.json() == first.json()
    assert second.headers["content-type"] == "application/json"
    assert demo_upstream.requests == 1
    head = httpx.head(gateway.url + "/things?a=1&b=2", timeout=5)  # a stored GET answers HEAD
    assert status(head) == "Hit"
    assert head.headers["content-length"] == str(len(first.content))
    assert demo_upstream.requests == 1
    other = get(gateway, "/things?a=2&b=2")
    assert status(other) == "Miss"
    assert demo_upstream.requests == 2
    # Methods that are not configured bypass the cache (no key either).
    for _ in range(2):
        posted = httpx.post(gateway.url + "/things", content=b"x", timeout=5)
        assert status(posted) == "Bypass"
        assert "x-cache-key" not in posted.headers
    assert demo_upstream.requests == 4
    # Statuses: 500 is not cacheable, 404 is (Kong's default response_code).
    assert status(get(gateway, "/status/500")) == "Bypass"
    assert status(get(gateway, "/status/500")) == "Bypass"
    assert status(get(gateway, "/status/404")) == "Miss"
    assert status(get(gateway, "/status/404")) == "Hit"
    assert demo_upstream.requests == 7


def test_response_headers_can_be_turned_off(gateway_factory: Factory, demo_upstream: DemoUpstream) -> None:
    config = {"response_headers": {"age": False, "X-Cache-Status": False, "X-Cache-Key": False}}
    gateway = cached_gateway(gateway_factory, demo_upstream.port, config)
    get(gateway, "/a")
    hit = get(gateway, "/a")
    assert not {"age", "x-cache-status", "x-cache-key"} & set(hit.headers)
    assert demo_upstream.requests == 1
    debug = get(gateway, "/a", headers={"Kong-Debug": "1"})  # Kong's debug header shows them anyway
    assert status(debug) == "Hit" and "x-cache-key" in debug.headers and "age" in debug.headers


def test_key_options(gateway_factory: Factory, demo_upstream: DemoUpstream) -> None:
    config = {"ignore_uri_case": True, "vary_query_params": ["page"], "vary_headers": ["X-Tenant"]}
    gateway = cached_gateway(gateway_factory, demo_upstream.port, config)
    assert status(get(gateway, "/List?page=1&tracking=x")) == "Miss"
    assert status(get(gateway, "/list?page=1&tracking=y")) == "Hit"
    assert status(get(gateway, "/list?page=2")) == "Miss"
    assert demo_upstream.requests == 2
    assert status(get(gateway, "/v", headers={"X-Tenant": "a"})) == "Miss"
    assert status(get(gateway, "/v", headers={"X-Tenant": "b"})) == "Miss"
    hit = get(gateway, "/v", headers={"X-Tenant": "a"})
    assert status(hit) == "Hit" and hit.json()["headers"]["x-tenant"] == "a"
    assert demo_upstream.requests == 4


# ---------------------------------------------------------------------- RFC 9111 storability
PRIVATE = {
    "/private": [("Cache-Control", "private, max-age=60")],
    "/no-store": [("Cache-Control", "no-store")],
    "/set-cookie": [("Set-Cookie", "session=abc")],
    "/vary-star": [("Vary", "*")],
    "/vary-list-with-star": [("Vary", "Accept, *")],
}


def test_private_responses_are_never_stored(gateway_factory: Factory) -> None:
    with ScriptedUpstream(lambda m, p, h: json_reply(*PRIVATE[p])) as upstream:
        gateway = cached_gateway(gateway_factory, upstream.port)  # even without cache_control
        for path in PRIVATE:
            for _ in range(3):
                response = get(gateway, path)
                assert response.status_code == 200
                assert status(response) == "Bypass", path
        assert upstream.requests == 3 * len(PRIVATE)


def test_vary_is_honoured(gateway_factory: Factory) -> None:
    def reply(method: str, path: str, headers: dict[str, str]) -> Reply:
        language = headers.get("accept-language", "none")
        return json_reply(("Vary", "Accept-Language"), body=f'{{"lang":"{language}"}}'.encode())

    with ScriptedUpstream(reply) as upstream:
        gateway = cached_gateway(gateway_factory, upstream.port)
        english = {"Accept-Language": "en"}
        french = {"Accept-Language": "fr"}
        assert status(get(gateway, "/v", headers=english)) == "Miss"
        hit = get(gateway, "/v", headers=english)
        assert status(hit) == "Hit" and hit.json() == {"lang": "en"}
        miss = get(gateway, "/v", headers=french)
        assert status(miss) == "Miss" and miss.json() == {"lang": "fr"}
        assert get(gateway, "/v", headers=french).json() == {"lang": "fr"}
        assert get(gateway, "/v", headers=english).json() == {"lang": "en"}  # both variants kept
        assert get(gateway, "/v").json() == {"lang": "none"}
        assert upstream.requests == 3


def test_cache_control_freshness_and_stale_if_error_directive(gateway_factory: Factory) -> None:
    failing = {"on": False}

    def reply(method: str, path: str, headers: dict[str, str]) -> Reply:
        directives = {
            "/short": "public, max-age=1",
            "/shared": "max-age=0, s-maxage=60",
            "/none": "",
            "/sie": "max-age=1, stale-if-error=30",
        }
        extra = [("Cache-Control", directives[path])] if directives[path] else []
        return json_reply(*extra, status=500 if failing["on"] else 200)

    with ScriptedUpstream(reply) as upstream:
        gateway = cached_gateway(gateway_factory, upstream.port, {"cache_control": True, "storage_ttl": 30})
        assert status(get(gateway, "/short")) == "Miss"
        assert status(get(gateway, "/sie")) == "Miss"
        assert status(get(gateway, "/short")) == "Hit"
        assert status(get(gateway, "/short", headers={"Cache-Control": "max-age=0"})) == "Refresh"
        assert status(get(gateway, "/short", headers={"Cache-Control": "no-cache"})) == "Bypass"
        assert status(get(gateway, "/shared")) == "Miss"
        assert status(get(gateway, "/shared")) == "Hit"  # s-maxage wins for a shared cache
        assert status(get(gateway, "/none")) == "Bypass"  # no freshness information: not stored
        only = get(gateway, "/never-seen", headers={"Cache-Control": "only-if-cached"})
        assert only.status_code == 504
        assert upstream.requests == 6
        time.sleep(1.2)
        assert status(get(gateway, "/short")) == "Refresh"
        stale = get(gateway, "/short", headers={"Cache-Control": "max-stale=60"})
        assert status(stale) == "Hit"  # the client accepts a stale answer
        failing["on"] = True
        assert status(get(gateway, "/sie")) == "Stale"  # the response's own stale-if-error=30


# ---------------------------------------------------------------------- consumers and Authorization
def _consumers_config(port: int, cache: dict[str, Any], key_names: list[str]) -> dict[str, Any]:
    return {
        "_format_version": "3.0",
        "services": [
            {
                "name": "svc",
                "url": f"http://127.0.0.1:{port}",
                "routes": [
                    {"name": "private", "paths": ["/private"]},
                    {"name": "open", "paths": ["/open"]},
                ],
            }
        ],
        "consumers": [
            {"username": "alice", "keyauth_credentials": [{"key": "alice-key"}]},
            {"username": "bob", "keyauth_credentials": [{"key": "bob-key"}]},
        ],
        "plugins": [
            {"name": "key-auth", "route": "private", "config": {"key_names": key_names}},
            {"name": "proxy-cache", "config": {"strategy": "memory", **cache}},
        ],
    }


def test_consumers_never_see_each_others_responses(
    gateway_factory: Factory, demo_upstream: DemoUpstream
) -> None:
    gateway = gateway_factory(_consumers_config(demo_upstream.port, {}, ["apikey"]))
    alice = get(gateway, "/private/me", headers={"apikey": "alice-key"})
    assert status(alice) == "Miss"
    assert alice.json()["headers"]["x-consumer-username"] == "alice"
    bob = get(gateway, "/private/me", headers={"apikey": "bob-key"})
    assert status(bob) == "Miss"
    assert bob.json()["headers"]["x-consumer-username"] == "bob"
    assert bob.headers["x-cache-key"] != alice.headers["x-cache-key"]
    for _ in range(3):
        for name in ("alice", "bob"):
            again = get(gateway, "/private/me", headers={"apikey": f"{name}-key"})
            assert status(again) == "Hit"
            assert again.json()["headers"]["x-consumer-username"] == name
    assert get(gateway, "/private/me").status_code == 401  # no key: never served from the cache
    assert demo_upstream.requests == 2


def test_authorized_requests_bypass_unless_the_route_opts_in(
    gateway_factory: Factory, demo_upstream: DemoUpstream
) -> None:
    gateway = gateway_factory(_consumers_config(demo_upstream.port, {}, ["authorization"]))
    for _ in range(2):
        response = get(gateway, "/private/me", headers={"Authorization": "alice-key"})
        assert response.status_code == 200 and status(response) == "Bypass"
    for _ in range(2):  # an Authorization the gateway did not check: no consumer to key by
        assert status(get(gateway, "/open/x", headers={"Authorization": "Bearer t"})) == "Bypass"
    assert demo_upstream.requests == 4


def test_authorized_requests_cached_per_consumer(
    gateway_factory: Factory, demo_upstream: DemoUpstream
) -> None:
    config = _consumers_config(demo_upstream.port, {"cache_authorized": "per_consumer"}, ["authorization"])
    gateway = gateway_factory(config)
    assert status(get(gateway, "/private/me", headers={"Authorization": "alice-key"})) == "Miss"
    assert status(get(gateway, "/private/me", headers={"Authorization": "bob-key"})) == "Miss"
    for name in ("alice", "bob", "alice"):
        hit = get(gateway, "/private/me", headers={"Authorization": f"{name}-key"})
        assert status(hit) == "Hit"
        assert hit.json()["headers"]["x-consumer-username"] == name
    assert status(get(gateway, "/open/x", headers={"Authorization": "Bearer t"})) == "Bypass"
    assert demo_upstream.requests == 3


# ---------------------------------------------------------------------- coalescing
async def _burst(url: str, count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(limits=limits, timeout=20) as client:
        return await asyncio.gather(*(client.get(url) for _ in range(count)))


def test_a_burst_of_misses_makes_one_upstream_request(
    gateway_factory: Factory, demo_upstream: DemoUpstream
) -> None:
    gateway = cached_gateway(gateway_factory, demo_upstream.port)
    responses = asyncio.run(_burst(gateway.url + "/delay/300", 100))
    assert [r.status_code for r in responses] == [200] * 100
    assert demo_upstream.requests == 1
    statuses = sorted(status(r) or "" for r in responses)
    assert statuses.count("Miss") == 1 and statuses.count("Hit") == 99
    assert len({r.content for r in responses}) == 1


def test_waiters_go_upstream_when_the_leader_cannot_store(gateway_factory: Factory) -> None:
    def reply(method: str, path: str, headers: dict[str, str]) -> Reply:
        time.sleep(0.2)
        return json_reply(status=500)

    with ScriptedUpstream(reply) as upstream:
        gateway = cached_gateway(gateway_factory, upstream.port)
        responses = asyncio.run(_burst(gateway.url + "/e", 5))
        # The leader's 500 is not cacheable: the waiters are released and each asks the upstream.
        assert [r.status_code for r in responses] == [500] * 5
        assert upstream.requests == 5


def test_waiters_stop_waiting_after_the_timeout(
    gateway_factory: Factory, demo_upstream: DemoUpstream
) -> None:
    gateway = cached_gateway(gateway_factory, demo_upstream.port, {"coalesce_timeout": 100})
    started = time.monotonic()
    responses = asyncio.run(_burst(gateway.url + "/delay/600", 3))
    assert [r.status_code for r in responses] == [200] * 3
    assert demo_upstream.requests == 3  # nobody waited 600 ms for the leader
    assert time.monotonic() - started < 1.5


# ---------------------------------------------------------------------- TTL and stale-if-error
def test_ttl_expiry_and_stale_if_error(gateway_factory: Factory) -> None:
    mode = {"status": 200}

    def reply(method: str, path: str, headers: dict[str, str]) -> Reply:
        code = mode["status"] if path != "/t" else 200
        return json_reply(status=code, body=b'{"version":1}' if code == 200 else b"{}")

    demo = DemoUpstream().start()  # stopping it closes its connections: the next request is refused
    with ScriptedUpstream(reply) as upstream:
        cache = {"strategy": "memory", "cache_ttl": 1, "storage_ttl": 30}
        config = {
            "_format_version": "3.0",
            "services": [
                {"name": "svc", "url": f"http://127.0.0.1:{upstream.port}", "routes": [{"paths": ["/"]}]},
                {"name": "demo", "url": f"http://127.0.0.1:{demo.port}", "routes": [{"paths": ["/down"]}]},
            ],
            "plugins": [{"name": "proxy-cache", "config": {**cache, "stale_if_error": 60}}],
        }
        gateway = gateway_factory(config)
        without = cached_gateway(gateway_factory, upstream.port, cache)
        try:
            for path in ("/t", "/s", "/down", "/down/never-cached"):
                assert status(get(gateway, path)) == "Miss"
        finally:
            demo.stop()
        assert status(get(gateway, "/t")) == "Hit"
        assert status(get(without, "/s")) == "Miss"
        assert upstream.requests == 3
        time.sleep(1.2)
        assert status(get(gateway, "/t")) == "Refresh"
        assert status(get(gateway, "/t")) == "Hit"
        # The upstream answers an error: the stale entry answers instead, within stale_if_error.
        mode["status"] = 503
        stale = get(gateway, "/s")
        assert stale.status_code == 200
        assert status(stale) == "Stale"
        assert stale.json() == {"version": 1}
        assert int(stale.headers["age"]) >= 1
        assert get(without, "/s").status_code == 503  # without stale_if_error the error passes
    # The upstream is gone (connection refused → 502): the stale entry answers too.
    down = get(gateway, "/down")
    assert down.status_code == 200, down.text
    assert status(down) == "Stale"
    assert down.json()["service"] == "upstream"  # the demo service's stored answer
    assert get(gateway, "/down/never-seen").status_code == 502


# ---------------------------------------------------------------------- admin API purge
def _admin(gateway: GatewayProcess) -> str:
    return gateway.admin_url  # type: ignore[attr-defined,no-any-return]


def _gateway_with_admin(
    factory: Factory, port: int, config: dict[str, Any] | None = None, *args: str
) -> GatewayProcess:
    admin_port = free_port()
    gateway = cached_gateway(factory, port, config, "--admin-listen", f"127.0.0.1:{admin_port}", *args)
    gateway.admin_url = f"http://127.0.0.1:{admin_port}"  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while True:
        try:
            httpx.get(gateway.admin_url + "/status", timeout=1)  # type: ignore[attr-defined]
            return gateway
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_purge_through_the_admin_api(gateway_factory: Factory, demo_upstream: DemoUpstream) -> None:
    gateway = _gateway_with_admin(gateway_factory, demo_upstream.port)
    admin = _admin(gateway)
    key = get(gateway, "/a").headers["x-cache-key"]
    assert status(get(gateway, "/a")) == "Hit"
    shown = httpx.get(f"{admin}/proxy-cache/{key}", timeout=5)
    assert shown.status_code == 200
    entry = shown.json()
    assert entry["status"] == 200 and entry["body_len"] == len(get(gateway, "/a").content)
    assert entry["headers"]["content-type"] == "application/json" and entry["ttl"] == 300
    assert httpx.delete(f"{admin}/proxy-cache/{key}", timeout=5).status_code == 204
    assert httpx.get(f"{admin}/proxy-cache/{key}", timeout=5).status_code == 404
    assert httpx.delete(f"{admin}/proxy-cache/{key}", timeout=5).status_code == 404
    assert status(get(gateway, "/a")) == "Miss"
    assert status(get(gateway, "/b")) == "Miss"
    assert httpx.delete(f"{admin}/proxy-cache", timeout=5).status_code == 204
    assert status(get(gateway, "/a")) == "Miss"
    assert status(get(gateway, "/b")) == "Miss"
    # Per plugin instance: /proxy-cache/{plugin id}/caches/{key}.
    plugin_id = httpx.get(f"{admin}/plugins", timeout=5).json()["data"][0]["id"]
    assert httpx.get(f"{admin}/proxy-cache/{plugin_id}/caches/{key}", timeout=5).status_code == 200
    assert httpx.delete(f"{admin}/proxy-cache/{plugin_id}/caches/{key}", timeout=5).status_code == 204
    assert httpx.get(f"{admin}/proxy-cache/nope/caches/{key}", timeout=5).status_code == 404
    assert httpx.post(f"{admin}/proxy-cache", timeout=5).status_code == 405
    assert demo_upstream.requests == 5


def test_purge_reaches_every_worker(gateway_factory: Factory) -> None:
    version = {"value": 1}

    def reply(method: str, path: str, headers: dict[str, str]) -> Reply:
        return json_reply(body=b'{"version":%d}' % version["value"])

    with ScriptedUpstream(reply) as upstream:
        gateway = _gateway_with_admin(gateway_factory, upstream.port, None, "--workers", "2")

        def versions() -> set[int]:
            # A new connection per request, so SO_REUSEPORT spreads them over both workers.
            seen = set()
            for _ in range(30):
                with httpx.Client(timeout=5) as client:
                    seen.add(client.get(gateway.url + "/w").json()["version"])
            return seen

        assert versions() == {1}
        assert upstream.requests == 2  # each worker has its own store (documented)
        version["value"] = 2
        assert httpx.delete(f"{_admin(gateway)}/proxy-cache", timeout=5).status_code == 204
        assert versions() == {2}  # no worker still answers from before the purge
        key = get(gateway, "/w").headers["x-cache-key"]
        version["value"] = 3
        assert httpx.delete(f"{_admin(gateway)}/proxy-cache/{key}", timeout=5).status_code == 204
        assert versions() == {3}


# ---------------------------------------------------------------------- redis
@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


def _redis_config(server: RedisServer, **extra: Any) -> dict[str, Any]:
    return {"strategy": "redis", "redis": {"host": "127.0.0.1", "port": server.port, "timeout": 500}, **extra}


def test_redis_strategy_is_shared_by_nodes(
    gateway_factory: Factory, demo_upstream: DemoUpstream, redis_server: RedisServer
) -> None:
    first = cached_gateway(gateway_factory, demo_upstream.port, _redis_config(redis_server))
    second = cached_gateway(gateway_factory, demo_upstream.port, _redis_config(redis_server))
    miss = get(first, "/r?x=1")
    assert status(miss) == "Miss"
    hit = get(second, "/r?x=1")  # another node: the entry is in Redis
    assert status(hit) == "Hit"
    assert hit.json() == miss.json()
    assert hit.headers["x-cache-key"] == miss.headers["x-cache-key"]
    assert demo_upstream.requests == 1
    responses = asyncio.run(_burst(first.url + "/delay/300", 50))
    assert [r.status_code for r in responses] == [200] * 50
    assert demo_upstream.requests == 2  # coalesced within the node


def test_redis_strategy_purge_ttl_and_outage(
    gateway_factory: Factory, demo_upstream: DemoUpstream, redis_server: RedisServer
) -> None:
    config = _redis_config(redis_server, cache_ttl=1, storage_ttl=30)
    gateway = _gateway_with_admin(gateway_factory, demo_upstream.port, config)
    admin = _admin(gateway)
    key = get(gateway, "/p").headers["x-cache-key"]
    assert status(get(gateway, "/p")) == "Hit"
    assert httpx.get(f"{admin}/proxy-cache/{key}", timeout=5).json()["status"] == 200
    time.sleep(1.2)
    assert status(get(gateway, "/p")) == "Refresh"
    assert httpx.delete(f"{admin}/proxy-cache/{key}", timeout=5).status_code == 204
    assert httpx.delete(f"{admin}/proxy-cache/{key}", timeout=5).status_code == 404
    assert status(get(gateway, "/p")) == "Miss"
    assert httpx.delete(f"{admin}/proxy-cache", timeout=5).status_code == 204
    assert status(get(gateway, "/p")) == "Miss"
    redis_server.kill()
    down = get(gateway, "/p")  # Redis down: a miss, never an error
    assert down.status_code == 200 and status(down) == "Miss"
    assert httpx.delete(f"{admin}/proxy-cache", timeout=5).status_code == 500
    redis_server.start()
    assert status(get(gateway, "/p")) == "Miss"
    assert status(get(gateway, "/p")) == "Hit"
