"""`opentelemetry`: config schema, and W3C propagation, access-log spans and OTLP export over the wire."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from forecourt.observability.tracing import parse_traceparent
from forecourt.pipeline import PluginEnv, PluginScope
from forecourt.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin, _WithTraceIdHeader
from tests.observability.otlp_collector import OtlpCollector
from tests.support.gateway import GatewayProcess
from tests.support.net import free_port
from tests.support.upstreams import DemoUpstream

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
INCOMING = f"00-{TRACE}-{PARENT}-01"


def config(port: int, plugin_config: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "services": [
            {"name": "svc", "url": f"http://127.0.0.1:{port}", "routes": [{"name": "r", "paths": ["/"]}]}
        ],
        "plugins": [{"name": "opentelemetry", "config": plugin_config or {}}],
    }


def upstream_headers(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 200, response.text
    headers: dict[str, str] = response.json()["headers"]
    return headers


def trace_records(gateway: GatewayProcess, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while True:
        records = [r for r in gateway.log_records(wait=0.15) if "trace" in r]
        if len(records) >= count or time.monotonic() > deadline:
            return records


# ---------------------------------------------------------------------------------------------- schema
def test_schema_defaults_follow_kong() -> None:
    config = OpenTelemetryConfig.model_validate({"traces_endpoint": "http://collector:4318/v1/traces"})
    assert config.queue.max_batch_size == 200
    assert config.queue.max_coalescing_delay == 1
    assert config.queue.max_entries == 10_000
    assert (config.connect_timeout, config.send_timeout, config.read_timeout) == (1000, 5000, 5000)
    assert config.header_type == "preserve"
    assert config.propagation.default_format == "w3c"
    assert config.sampling_rate is None
    assert config.http_response_header_for_traceid is None


@pytest.mark.parametrize(
    ("plugin_config", "message"),
    [
        ({"traces_endpoint": "collector:4318"}, "http:// or https:// URL"),
        ({"propagation": {"extract": ["b3"]}}, "'b3' is not implemented"),
        ({"propagation": {"inject": ["preserve", "datadog"]}}, "'datadog' is not implemented"),
        ({"propagation": {"extract": ["zipkin"]}}, "unknown propagation format"),
        ({"propagation": {"default_format": "jaeger"}}, "'jaeger' is not implemented"),
        ({"header_type": "jaeger"}, "header_type 'jaeger' is not implemented"),
        ({"header_type": "nonsense"}, "Input should be"),
        ({"logs_endpoint": "http://c/v1/logs"}, "logs_endpoint"),
        ({"sampling_rate": 1.5}, "less than or equal to 1"),
        ({"queue": {"max_bytes": 1000}}, "max_bytes is not implemented"),
        ({"queue": {"concurrency_limit": -1}}, "concurrency_limit -1"),
        ({"resource_attributes": {"service.name": ""}}, "required field missing"),
        ({"no_such_field": 1}, "Extra inputs are not permitted"),
    ],
)
def test_schema_rejects_what_forecourt_cannot_honour(plugin_config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        OpenTelemetryConfig.model_validate(plugin_config)


def test_deprecated_fields_map_to_the_queue() -> None:
    config = OpenTelemetryConfig.model_validate(
        {"endpoint": "http://c:4318/v1/traces", "batch_span_count": 7, "batch_flush_delay": 2}
    )
    plugin = OpenTelemetryPlugin(config, PluginScope(), PluginEnv(gateway="g"))
    settings = plugin._settings
    assert settings is not None
    assert settings.url == "http://c:4318/v1/traces"
    assert (settings.max_batch_size, settings.max_coalescing_delay) == (7, 2.0)
    assert settings.resource["service.name"] == "forecourt"
    assert settings.resource["forecourt.gateway"] == "g"


def test_response_phase_only_when_a_trace_id_header_is_configured() -> None:
    plain = OpenTelemetryPlugin(OpenTelemetryConfig(), PluginScope(), PluginEnv())
    stamped = OpenTelemetryPlugin(
        OpenTelemetryConfig(http_response_header_for_traceid="X-Trace-Id"), PluginScope(), PluginEnv()
    )
    assert not type(plain).overrides("response")
    assert isinstance(stamped, _WithTraceIdHeader)
    assert type(stamped).overrides("response")


# ---------------------------------------------------------------------------------------------- behaviour
@pytest.fixture
def collector() -> Iterator[OtlpCollector]:
    server = OtlpCollector().start()
    yield server
    server.stop()


def test_incoming_trace_is_continued_and_logged(
    demo_upstream: DemoUpstream, gateway_factory: Callable[..., GatewayProcess]
) -> None:
    gateway = gateway_factory(config(demo_upstream.port, {"http_response_header_for_traceid": "X-Trace-Id"}))
    response = httpx.get(
        f"{gateway.url}/hello",
        headers={"traceparent": INCOMING, "tracestate": "vendor=abc,other=1"},
        timeout=5,
    )
    headers = upstream_headers(response)
    forwarded = parse_traceparent(headers["traceparent"])
    assert forwarded is not None
    assert forwarded.trace_id == TRACE  # same trace
    assert forwarded.parent_id != PARENT  # the gateway's span is the upstream's parent now
    assert forwarded.sampled
    assert headers["tracestate"] == "vendor=abc,other=1"  # passes through unchanged
    assert response.headers["x-trace-id"] == TRACE
    (record,) = trace_records(gateway, 1)
    trace = record["trace"]
    assert trace["trace_id"] == TRACE
    assert trace["parent_span_id"] == PARENT
    assert trace["sampled"] is True
    assert len(trace["span_id"]) == 16 and trace["span_id"] not in (PARENT, forwarded.parent_id)
    spans = trace["spans"]
    assert spans["upstream"]["span_id"] == forwarded.parent_id
    assert spans["gateway"]["duration_ms"] >= spans["upstream"]["duration_ms"] >= 0
    assert abs(spans["gateway"]["start"] - time.time()) < 30
    assert spans["gateway"]["start"] <= spans["upstream"]["start"]
    assert record["request_id"] == response.headers["x-forecourt-request-id"]


def test_unsampled_flag_is_respected(
    demo_upstream: DemoUpstream, gateway_factory: Callable[..., GatewayProcess]
) -> None:
    gateway = gateway_factory(config(demo_upstream.port))
    incoming = f"00-{TRACE}-{PARENT}-00"
    headers = upstream_headers(httpx.get(f"{gateway.url}/", headers={"traceparent": incoming}, timeout=5))
    forwarded = parse_traceparent(headers["traceparent"])
    assert forwarded is not None and forwarded.trace_id == TRACE and not forwarded.sampled


@pytest.mark.parametrize(
    "incoming",
    [
        {},
        {"tracestate": "orphan=1"},  # a tracestate without traceparent means nothing
        {"traceparent": f"00-{TRACE.upper()}-{PARENT}-01", "tracestate": "vendor=abc"},
        {"traceparent": f"00-{'0' * 32}-{PARENT}-01"},
        [("traceparent", INCOMING), ("traceparent", INCOMING)],  # more than one is invalid
    ],
)
def test_a_new_trace_starts_when_there_is_no_valid_one(
    demo_upstream: DemoUpstream,
    gateway_factory: Callable[..., GatewayProcess],
    incoming: dict[str, str] | list[tuple[str, str]],
) -> None:
    gateway = gateway_factory(config(demo_upstream.port))
    headers = upstream_headers(httpx.get(f"{gateway.url}/", headers=incoming, timeout=5))
    started = parse_traceparent(headers["traceparent"])
    assert started is not None
    assert started.trace_id != TRACE
    assert started.sampled  # sampling_rate defaults to 1
    assert "tracestate" not in headers  # W3C: drop the state of a trace we do not continue
    (record,) = trace_records(gateway, 1)
    assert record["trace"]["trace_id"] == started.trace_id
    assert record["trace"]["parent_span_id"] is None


def test_sampling_rate_zero_and_ignored_and_cleared_headers(
    demo_upstream: DemoUpstream, gateway_factory: Callable[..., GatewayProcess]
) -> None:
    gateway = gateway_factory(
        config(
            demo_upstream.port,
            {"sampling_rate": 0, "header_type": "ignore", "propagation": {"clear": ["X-Amzn-Trace-Id"]}},
        )
    )
    headers = upstream_headers(
        httpx.get(
            f"{gateway.url}/", headers={"traceparent": INCOMING, "x-amzn-trace-id": "Root=1-abc"}, timeout=5
        )
    )
    started = parse_traceparent(headers["traceparent"])
    assert started is not None
    assert started.trace_id != TRACE  # header_type ignore: incoming context is not read
    assert not started.sampled  # new traces are sampled at sampling_rate 0
    assert "x-amzn-trace-id" not in headers


def test_inject_nothing_leaves_the_incoming_header(
    demo_upstream: DemoUpstream, gateway_factory: Callable[..., GatewayProcess]
) -> None:
    gateway = gateway_factory(config(demo_upstream.port, {"propagation": {"extract": ["w3c"], "inject": []}}))
    headers = upstream_headers(httpx.get(f"{gateway.url}/", headers={"traceparent": INCOMING}, timeout=5))
    assert headers["traceparent"] == INCOMING
    (record,) = trace_records(gateway, 1)
    assert record["trace"]["trace_id"] == TRACE


def test_spans_are_exported_to_an_otlp_collector(
    demo_upstream: DemoUpstream, gateway_factory: Callable[..., GatewayProcess], collector: OtlpCollector
) -> None:
    plugin_config = {
        "traces_endpoint": collector.url,
        "headers": {"Authorization": "Bearer secret"},
        "resource_attributes": {"service.name": "edge", "deployment.environment": "test"},
        "queue": {"max_batch_size": 4, "max_coalescing_delay": 0.1},
    }
    gateway = gateway_factory(config(demo_upstream.port, plugin_config))
    forwarded = []
    with httpx.Client(base_url=gateway.url, timeout=5) as client:
        for _ in range(3):
            headers = upstream_headers(client.get("/orders", headers={"traceparent": INCOMING}))
            forwarded.append(parse_traceparent(headers["traceparent"]))
    spans = collector.wait_for_spans(6)
    assert len(spans) == 6
    _, request_headers, body = collector.requests[0]
    assert request_headers["authorization"] == "Bearer secret"
    resource = {
        a["key"]: a["value"]["stringValue"] for a in body["resourceSpans"][0]["resource"]["attributes"]
    }
    assert resource["service.name"] == "edge"
    assert resource["deployment.environment"] == "test"
    assert resource["forecourt.gateway"] == "gateway"
    servers = [s for s in spans if s["kind"] == 2]
    clients = [s for s in spans if s["kind"] == 3]
    assert len(servers) == len(clients) == 3
    by_id = {s["spanId"]: s for s in servers}
    for context in forwarded:
        assert context is not None
        (client_span,) = [s for s in clients if s["spanId"] == context.parent_id]
        server_span = by_id[client_span["parentSpanId"]]
        assert server_span["parentSpanId"] == PARENT
        assert server_span["traceId"] == client_span["traceId"] == TRACE
        assert int(server_span["startTimeUnixNano"]) <= int(client_span["startTimeUnixNano"])
        assert int(client_span["endTimeUnixNano"]) <= int(server_span["endTimeUnixNano"])
        attributes = {a["key"]: a["value"] for a in server_span["attributes"]}
        assert attributes["http.request.method"] == {"stringValue": "GET"}
        assert attributes["http.response.status_code"] == {"intValue": "200"}
        assert attributes["url.path"] == {"stringValue": "/orders"}
        assert server_span["name"] == "GET r"


def test_a_dead_collector_never_slows_requests(
    demo_upstream: DemoUpstream, gateway_factory: Callable[..., GatewayProcess]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1/traces"
    gateway = gateway_factory(
        config(demo_upstream.port, {"traces_endpoint": dead, "queue": {"max_batch_size": 1}})
    )
    started = time.monotonic()
    with httpx.Client(base_url=gateway.url, timeout=5) as client:
        for _ in range(20):
            assert client.get("/").status_code == 200
    assert time.monotonic() - started < 5
    assert len(trace_records(gateway, 20)) == 20
