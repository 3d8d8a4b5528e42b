"""Aggregate routes over the wire: one gateway process, real demo backends on 127.0.0.1.

The demo service echoes what it received as JSON (`service`, `method`, `path`, `query`, `headers`),
answers `/delay/<ms>` late and `/status/<code>` with that status, so each test reads from the
aggregate's body exactly what each backend was sent.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.support.gateway import GatewayProcess
from tests.support.net import free_port
from tests.support.upstreams import DemoUpstream


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, DemoUpstream]]:
    started = {name: DemoUpstream(name).start() for name in ("s0", "s1", "s2", "flaky", "tripping")}
    yield started
    for upstream in started.values():
        upstream.stop()


def _route(name: str, backends: list[dict[str, Any]], timeout: int = 1000, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "paths": [f"/{name}"],
        "aggregate": {"timeout": timeout, "backends": backends},
        **extra,
    }


def _config(upstreams: dict[str, DemoUpstream]) -> dict[str, Any]:
    services = [{"name": name, "url": f"http://127.0.0.1:{u.port}"} for name, u in upstreams.items()]
    services.append({"name": "dead", "url": f"http://127.0.0.1:{free_port()}", "retries": 1})
    ok = {"name": "ok", "service": "s0", "path": "/ok"}
    slow = {"service": "s1", "path": "/delay/2000"}
    routes = [
        _route(
            "parallel",
            [
                {"name": n, "service": s, "path": "/delay/50"}
                for n, s in (("a", "s0"), ("b", "s1"), ("c", "s2"))
            ],
            plugins=[{"name": "response-transformer", "config": {"add": {"headers": ["X-Extra:yes"]}}}],
        ),
        _route("slow", [ok, {"name": "slow", **slow, "timeout": 200}]),
        _route("deadline", [ok, {"name": "slow", **slow}], timeout=200),
        _route("required-down", [ok, {"name": "must", "service": "dead", "required": True}]),
        _route("required-slow", [ok, {"name": "must", **slow, "timeout": 150, "required": True}]),
        _route("all-down", [{"name": "a", "service": "dead"}, {"name": "b", "service": "dead"}]),
        _route("all-slow", [{"name": "a", **slow, "timeout": 100}, {"name": "b", **slow, "timeout": 100}]),
        _route(
            "fallback-static",
            [
                ok,
                {"name": "recs", "service": "s1", "path": "/status/500", "fallback": {"body": {"items": []}}},
            ],
        ),
        _route(
            "fallback-cache",
            [{"name": "data", "service": "flaky", "path": "/data", "fallback": {"cache": {"max_age": 1}}}],
        ),
        _route(
            "breaker",
            [
                ok,
                {
                    "name": "recs",
                    "service": "tripping",
                    "path": "/status/503",
                    "circuit_breaker": {"failures": 1, "open_seconds": 30},
                    "fallback": {"body": {"items": ["default"]}},
                },
            ],
        ),
        _route(
            "depends",
            [
                {
                    "name": "orders",
                    "service": "s1",
                    "path": "/orders/$(backends.user.body.method)",
                    "query": {"user": "$(backends.user.body.path)"},
                    "depends_on": ["user"],
                },
                {"name": "user", "service": "s0", "path": "/users/7"},
            ],
        ),
        {
            "name": "templated",
            "paths": [r"~/templated/(?<id>\d+)$"],
            "plugins": [{"name": "key-auth"}],
            "aggregate": {
                "backends": [
                    {
                        "name": "item",
                        "service": "s0",
                        "path": "/items/$(uri_captures.id)/$(headers.x_name)",
                        "query": {"page": "$(query_params.page)"},
                        "headers": {"X-User": "$(consumer.username)", "X-Trace": "$(headers.x_trace)"},
                    }
                ]
            },
        },
        _route(
            "shaped",
            [
                {
                    "name": "a",
                    "service": "s0",
                    "path": "/a",
                    "allow": ["service", "headers.accept"],
                    "mapping": {"service": "from"},
                    "group": "info",
                },
                {"name": "b", "service": "s1", "path": "/b", "allow": ["method"], "group": "info"},
                {
                    "name": "c",
                    "service": "s2",
                    "path": "/c",
                    "method": "POST",
                    "body": {"who": "$(query_params.who)"},
                },
            ],
        ),
    ]
    cached = {"name": "proxy-cache", "config": {"strategy": "memory"}}
    routes += [
        _route("cached", [{"name": "a", "service": "s2", "path": "/cached"}], plugins=[cached]),
        _route(
            "cached-partial",
            [{"name": "a", "service": "s2", "path": "/cached"}, {"name": "b", "service": "dead"}],
            plugins=[cached],
        ),
    ]
    return {
        "_format_version": "3.0",
        "services": services,
        "routes": routes,
        "consumers": [{"username": "alice", "keyauth_credentials": [{"key": "alice-key"}]}],
    }


@pytest.fixture(scope="module")
def gateway(
    module_gateway_factory: Callable[..., GatewayProcess], backends: dict[str, DemoUpstream]
) -> GatewayProcess:
    return module_gateway_factory(_config(backends))


@pytest.fixture
def client(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        yield http


def timed_get(client: httpx.Client, path: str, **kwargs: Any) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = client.get(path, **kwargs)
    return response, time.perf_counter() - started


def test_backends_are_called_in_parallel(client: httpx.Client) -> None:
    client.get("/parallel")  # warm the pooled connections
    latencies = []
    for _ in range(15):
        response, elapsed = timed_get(client, "/parallel")
        latencies.append(elapsed)
        assert response.status_code == 200
    body = response.json()
    assert [body[name]["service"] for name in ("a", "b", "c")] == ["s0", "s1", "s2"]
    assert response.headers["X-Forecourt-Completed"] == "true"
    assert "_errors" not in body
    assert "Cache-Control" not in response.headers  # a complete GET aggregate is cacheable
    assert response.headers["X-Extra"] == "yes"  # plugins' response phase ran on the aggregate
    # Three 50 ms backends: about 50 ms in parallel, 150 ms one after the other.
    assert statistics.median(latencies) < 0.1, latencies


def test_slow_backend_times_out_while_the_others_answer(client: httpx.Client) -> None:
    response, elapsed = timed_get(client, "/slow")
    assert response.status_code == 200
    assert elapsed < 0.5  # the backend timeout (200 ms), not the backend's 2 s
    assert response.headers["X-Forecourt-Completed"] == "false"
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert body["ok"]["path"] == "/ok"
    assert "slow" not in body
    assert body["_errors"]["slow"]["status"] == 504
    assert "backend timeout" in body["_errors"]["slow"]["reason"]


def test_the_deadline_bounds_the_whole_fan_out(client: httpx.Client) -> None:
    response, elapsed = timed_get(client, "/deadline")
    assert response.status_code == 200
    assert 0.19 < elapsed < 0.4
    assert response.json()["_errors"]["slow"]["status"] == 504
    assert "aggregate deadline" in response.json()["_errors"]["slow"]["reason"]


def test_a_required_backend_down_fails_the_request_with_502(client: httpx.Client) -> None:
    response = client.get("/required-down")
    assert response.status_code == 502
    assert response.headers["X-Forecourt-Completed"] == "false"
    body = response.json()
    assert body["message"].startswith('required backend "must" failed: connection failed')
    assert body["_errors"]["must"]["status"] == 502
    assert body["request_id"] == response.headers["X-Forecourt-Request-Id"]


def test_a_required_backend_timing_out_fails_the_request_with_504(client: httpx.Client) -> None:
    response, elapsed = timed_get(client, "/required-slow")
    assert response.status_code == 504
    assert elapsed < 0.5
    assert response.json()["_errors"]["must"]["status"] == 504


@pytest.mark.parametrize(("path", "status"), [("/all-down", 502), ("/all-slow", 504)])
def test_every_backend_failing_fails_the_request(client: httpx.Client, path: str, status: int) -> None:
    response = client.get(path)
    assert response.status_code == status
    body = response.json()
    assert body["message"] == "every backend failed"
    assert set(body["_errors"]) == {"a", "b"}


def test_a_static_fallback_stands_in_for_a_failed_backend(client: httpx.Client) -> None:
    response = client.get("/fallback-static")
    assert response.status_code == 200
    body = response.json()
    assert body["recs"] == {"items": []}
    assert body["_errors"]["recs"] == {
        "status": 502,
        "reason": "backend answered 500",
        "upstream_status": 500,
        "fallback": "static",
    }
    assert response.headers["X-Forecourt-Completed"] == "false"


def test_the_last_good_answer_is_served_within_max_age(
    client: httpx.Client, backends: dict[str, DemoUpstream]
) -> None:
    good = client.get("/fallback-cache")
    assert good.json()["data"]["service"] == "flaky"
    backends["flaky"].stop()
    stale = client.get("/fallback-cache")
    assert stale.status_code == 200
    assert stale.json()["data"]["service"] == "flaky"
    error = stale.json()["_errors"]["data"]
    assert error["fallback"] == "cache" and error["status"] == 502 and error["age"] < 1
    time.sleep(1.1)
    expired = client.get("/fallback-cache")
    assert expired.status_code == 502
    assert "fallback" not in expired.json()["_errors"]["data"]


def test_an_open_breaker_serves_the_fallback_without_calling_the_backend(
    client: httpx.Client, backends: dict[str, DemoUpstream]
) -> None:
    tripping = backends["tripping"]
    first = client.get("/breaker")  # the backend is called, fails, and the breaker opens
    assert first.json()["recs"] == {"items": ["default"]}
    assert tripping.requests == 1
    for _ in range(3):
        response = client.get("/breaker")
        assert response.status_code == 200
        assert response.json()["recs"] == {"items": ["default"]}
        error = response.json()["_errors"]["recs"]
        assert error["status"] == 503
        assert error["reason"].startswith("circuit breaker open")
        assert error["fallback"] == "static"
    assert tripping.requests == 1


def test_a_backend_reads_an_earlier_backends_answer(client: httpx.Client) -> None:
    response = client.get("/depends")
    assert response.status_code == 200
    body = response.json()
    assert body["user"]["path"] == "/users/7"
    assert body["orders"]["path"] == "/orders/GET"
    assert body["orders"]["query"] == "user=%2Fusers%2F7"
    assert list(body) == ["orders", "user"]  # config order, whatever order they ran in


def test_templates_read_the_request_and_the_consumer(client: httpx.Client) -> None:
    assert client.get("/templated/42").status_code == 401  # key-auth runs before the fan-out
    response = client.get(
        "/templated/42?page=3",
        headers={"apikey": "alice-key", "X-Trace": "t-1", "X-Name": "../../admin"},
    )
    assert response.status_code == 200, response.text
    item = response.json()["item"]
    # A value fills one path segment: it can neither add segments nor climb out of the path.
    assert item["path"] == "/items/42/..%2F..%2Fadmin"
    assert item["query"] == "page=3"
    assert item["headers"]["x-user"] == "alice"
    assert item["headers"]["x-trace"] == "t-1"
    assert "apikey" not in item["headers"]  # only configured headers reach a backend


def test_allow_mapping_and_groups_shape_the_response(client: httpx.Client) -> None:
    response = client.get("/shaped?who=bob")
    assert response.status_code == 200
    body = response.json()
    assert body["info"] == {"from": "s0", "headers": {"accept": "application/json"}, "method": "GET"}
    assert body["c"]["method"] == "POST"
    assert body["c"]["body"] == '{"who":"bob"}'


def test_only_get_and_head_aggregates_are_cacheable(client: httpx.Client) -> None:
    posted = client.post("/parallel")
    assert posted.status_code == 200
    assert posted.headers["Cache-Control"] == "no-store"
    head = client.head("/parallel")
    assert head.status_code == 200
    assert head.content == b""
    assert "Cache-Control" not in head.headers
    assert int(head.headers["Content-Length"]) > 0


def test_proxy_cache_stores_complete_aggregates_only(
    client: httpx.Client, backends: dict[str, DemoUpstream]
) -> None:
    s2 = backends["s2"]
    first = client.get("/cached")
    assert first.headers["X-Cache-Status"] == "Miss"
    calls = s2.requests
    second = client.get("/cached")
    assert second.headers["X-Cache-Status"] == "Hit"
    assert second.json() == first.json()
    assert s2.requests == calls  # answered from the cache: no fan-out
    for _ in range(2):
        partial = client.get("/cached-partial")
        assert partial.headers["X-Forecourt-Completed"] == "false"
        assert partial.headers["X-Cache-Status"] == "Bypass"  # no-store: never stored
    assert s2.requests == calls + 2


def test_the_access_log_has_per_backend_timings(client: httpx.Client, gateway: GatewayProcess) -> None:
    response = client.get("/slow")
    request_id = response.headers["X-Forecourt-Request-Id"]
    record = next(r for r in gateway.log_records() if r["request_id"] == request_id)
    assert record["route"] == "slow"
    assert record["backends"]["ok"]["status"] == 200
    assert record["backends"]["ok"]["target"].startswith("127.0.0.1:")
    assert record["backends"]["slow"]["status"] == 504
    assert 150 <= record["backends"]["slow"]["latency"] < 400
