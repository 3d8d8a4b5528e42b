"""`prometheus`: config schema, and metrics scraped from a real gateway's admin `/metrics`."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from forecourt.plugins.prometheus import PrometheusConfig
from tests.admin.conftest import NxdomainDns
from tests.support.gateway import GatewayProcess
from tests.support.net import free_port, wait_for_port
from tests.support.upstreams import DemoUpstream

ROOT = Path(__file__).resolve().parents[2]
ALL_ON = {"status_code_metrics": True, "latency_metrics": True, "bandwidth_metrics": True}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(autouse=True)
def stubs_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Gateways under test load `tests.plugins.*` stubs by dotted path."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), *sys.path]))


def scrape(admin_port: int) -> Samples:
    wait_for_port(admin_port)  # the admin listener opens after the proxy's
    response = httpx.get(f"http://127.0.0.1:{admin_port}/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    found: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def series(found: Samples, name: str, **labels: str) -> float:
    """Sum of `name`'s samples whose labels include `labels` (0 when there are none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in found.items() if n == name and wanted <= set(ls))


def scrape_until(admin_port: int, name: str, expected: float, **labels: str) -> Samples:
    """Scrape until `name` reaches `expected` (other workers publish every 250 ms)."""
    deadline = time.monotonic() + 5
    while True:
        found = scrape(admin_port)
        if series(found, name, **labels) >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def gateway_config(port: int, plugin_config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    dead = free_port()
    config: dict[str, Any] = {
        "services": [
            {"name": "svc", "url": f"http://127.0.0.1:{port}", "routes": [{"name": "r", "paths": ["/api"]}]},
            {
                "name": "dead",
                "url": f"http://127.0.0.1:{dead}",
                "retries": 0,
                "routes": [{"name": "down", "paths": ["/down"]}],
            },
        ],
        "plugins": [{"name": "prometheus", "config": plugin_config}],
    }
    config.update(extra)
    return config


# ---------------------------------------------------------------------------------------------- schema
def test_schema_defaults_follow_kong() -> None:
    config = PrometheusConfig.model_validate({})
    assert config.model_dump() == {
        "per_consumer": False,
        "status_code_metrics": False,
        "ai_metrics": False,
        "latency_metrics": False,
        "bandwidth_metrics": False,
        "upstream_health_metrics": False,
    }


@pytest.mark.parametrize(
    "config",
    [{"per_consumer": "yes"}, {"status_code_metrics": 1}, {"no_such_field": True}, {"latency_metrics": None}],
)
def test_schema_rejects_bad_fields(config: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        PrometheusConfig.model_validate(config)


def test_kong_config_loads_and_errors_name_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from forecourt.cli import main

    good = tmp_path / "good.yaml"
    good.write_text(
        "_format_version: '3.0'\nplugins:\n- name: prometheus\n  config:\n"
        "    per_consumer: true\n    status_code_metrics: true\n    latency_metrics: true\n"
        "    bandwidth_metrics: true\n    upstream_health_metrics: true\n"
    )
    assert main(["check", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("plugins:\n- name: prometheus\n  config:\n    latency_metric: true\n")
    assert main(["check", str(bad)]) == 1
    assert "latency_metric" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- behaviour
def test_requests_latency_and_bandwidth_across_two_workers(
    demo_upstream: DemoUpstream, gateway_factory: Callable[..., GatewayProcess]
) -> None:
    admin = free_port()
    gateway = gateway_factory(
        gateway_config(demo_upstream.port, ALL_ON), "--admin-listen", f"127.0.0.1:{admin}", "--workers", "2"
    )
    workers: set[str] = set()
    egress = 0
    sent = 0
    # New connections until both workers answered some (request ids start with a per-worker prefix).
    while sent < 20 or (len(workers) < 2 and sent < 400):
        response = httpx.post(f"{gateway.url}/api/x", content=b"0123456789", timeout=5)
        assert response.status_code == 200
        workers.add(response.headers["x-forecourt-request-id"][:16])
        egress += len(response.content)
        sent += 1
    assert len(workers) == 2, "the kernel gave every connection to one worker"
    for _ in range(3):
        assert httpx.get(f"{gateway.url}/down", timeout=5).status_code == 502
    assert httpx.get(f"{gateway.url}/nowhere", timeout=5).status_code == 404  # no route: no plugin

    route = {"service": "svc", "route": "r", "gateway": "gateway"}
    # A worker publishes all its series at once: when every request is counted, all of it is there.
    found = scrape_until(admin, "kong_http_requests_total", sent + 3)
    assert (
        series(found, "kong_http_requests_total", code="200", source="service", consumer="", **route) == sent
    )
    assert (
        series(found, "kong_http_requests_total", service="dead", route="down", code="502", source="kong")
        == 3
    )
    assert series(found, "kong_http_requests_total", code="404") == 0
    for histogram in ("kong_request_latency_ms", "kong_upstream_latency_ms", "kong_kong_latency_ms"):
        assert series(found, f"{histogram}_count", **route) == sent
        assert series(found, f"{histogram}_bucket", le="+Inf", **route) == sent
        buckets = sorted(
            (float(dict(ls)["le"]), v)
            for (n, ls), v in found.items()
            if n == f"{histogram}_bucket" and set(route.items()) <= set(ls)
        )
        counts = [v for _, v in buckets]
        assert counts == sorted(counts)  # cumulative
        assert series(found, f"{histogram}_sum", **route) >= 0
    # The upstream never answered the dead service: no upstream latency there, gateway latency yes.
    assert series(found, "kong_upstream_latency_ms_count", service="dead") == 0
    assert series(found, "kong_kong_latency_ms_count", service="dead") == 3
    # (Kong's name has no `_total`; the text is `kong_bandwidth_bytes{...}`, the parser adds `_total`.)
    assert "\nkong_bandwidth_bytes{" in httpx.get(f"http://127.0.0.1:{admin}/metrics").text
    assert series(found, "kong_bandwidth_bytes_total", direction="ingress", **route) == 10 * sent
    assert series(found, "kong_bandwidth_bytes_total", direction="egress", **route) == egress
    # Node-level gauges come from the admin API's /status counters (all workers).
    # (published by each worker every 100 ms, independently of the plugin's series)
    found = scrape_until(admin, "kong_nginx_requests_total", sent + 4)
    assert series(found, "kong_nginx_requests_total", subsystem="http") >= sent + 4
    assert series(found, "kong_datastore_reachable") == 1


def test_per_consumer_and_rate_limit_rejections(
    demo_upstream: DemoUpstream, gateway_factory: Callable[..., GatewayProcess]
) -> None:
    admin = free_port()
    config = gateway_config(demo_upstream.port, {"status_code_metrics": True, "per_consumer": True})
    config["plugins"] += [
        {"name": "tests.plugins.consumer_stub:ConsumerStub"},
        {"name": "tests.plugins.limit_stub:LimitStub"},
    ]
    gateway = gateway_factory(config, "--admin-listen", f"127.0.0.1:{admin}")
    with httpx.Client(base_url=gateway.url, timeout=5) as client:
        for _ in range(2):
            assert client.get("/api/a", headers={"X-Test-Consumer": "alice"}).status_code == 200
        assert client.get("/api/a", headers={"X-Test-Consumer": "bob"}).status_code == 200
        assert client.get("/api/a").status_code == 200
        for _ in range(3):
            limited = client.get("/api/a", headers={"X-Test-Consumer": "bob", "X-Test-Limit": "1"})
            assert limited.status_code == 429
        upstream_429 = client.get("/api/status/429")  # the demo service answers the status in the path
    found = scrape_until(admin, "kong_http_requests_total", 8, route="r")
    route = {"service": "svc", "route": "r", "gateway": "gateway"}
    assert series(found, "kong_http_requests_total", code="200", consumer="alice", **route) == 2
    assert series(found, "kong_http_requests_total", code="200", consumer="bob", **route) == 1
    assert series(found, "kong_http_requests_total", code="200", consumer="", **route) == 1
    assert series(found, "kong_http_requests_total", code="429", source="kong", consumer="bob", **route) == 3
    assert series(found, "forecourt_rate_limited_total", consumer="bob", **route) == 3
    assert series(found, "forecourt_rate_limited_total") == 3  # an upstream's own 429 is not a rejection
    assert upstream_429.status_code == 429
    assert series(found, "kong_http_requests_total", code="429", source="service") == 1
    # Without latency_metrics/bandwidth_metrics those families are not exported (Kong's defaults).
    assert series(found, "kong_request_latency_ms_count") == 0
    assert series(found, "kong_bandwidth_bytes_total") == 0


@pytest.fixture
def nxdomain() -> Iterator[NxdomainDns]:
    server = NxdomainDns()
    yield server
    server.stop()


def test_upstream_target_health(
    demo_upstream: DemoUpstream, gateway_factory: Callable[..., GatewayProcess], nxdomain: NxdomainDns
) -> None:
    admin = free_port()
    config = {
        "upstreams": [
            {
                "name": "orders",
                "targets": [
                    {"target": f"127.0.0.1:{demo_upstream.port}"},
                    {"target": "missing.example.invalid:8080"},
                ],
            }
        ],
        "services": [{"name": "svc", "host": "orders", "routes": [{"name": "r", "paths": ["/"]}]}],
        "plugins": [{"name": "prometheus", "config": {"upstream_health_metrics": True}}],
    }
    gateway_factory(config, "--admin-listen", f"127.0.0.1:{admin}", "--dns-resolver", nxdomain.address)
    found = scrape(admin)
    address = f"127.0.0.1:{demo_upstream.port}"
    labels = {"upstream": "orders", "target": address, "address": address, "subsystem": "http"}
    assert series(found, "kong_upstream_target_health", state="healthchecks_off", **labels) == 1
    for state in ("healthy", "unhealthy", "dns_error"):
        assert series(found, "kong_upstream_target_health", state=state, **labels) == 0
    missing = {"upstream": "orders", "target": "missing.example.invalid:8080", "address": ""}
    assert series(found, "kong_upstream_target_health", state="dns_error", **missing) == 1
    assert series(found, "kong_upstream_target_health", state="healthchecks_off", **missing) == 0
    assert series(found, "kong_http_requests_total") == 0  # status_code_metrics is off


def test_without_the_plugin_target_health_is_not_exported(
    demo_upstream: DemoUpstream, gateway_factory: Callable[..., GatewayProcess]
) -> None:
    admin = free_port()
    config = gateway_config(demo_upstream.port, {})
    config["upstreams"] = [{"name": "u", "targets": [{"target": f"127.0.0.1:{demo_upstream.port}"}]}]
    gateway = gateway_factory(config, "--admin-listen", f"127.0.0.1:{admin}")
    assert httpx.get(f"{gateway.url}/api/x", timeout=5).status_code == 200
    found = scrape(admin)
    assert series(found, "kong_upstream_target_health") == 0
    assert series(found, "kong_http_requests_total") == 0
    assert series(found, "kong_datastore_reachable") == 1
