"""W3C trace context parsing, sampling, OTLP JSON encoding and the batching exporter."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forecourt.observability.tracing import (
    SPAN_KIND_SERVER,
    ExportError,
    ExportSettings,
    OtlpExporter,
    RatioSampler,
    Span,
    TraceParent,
    encode_otlp_json,
    format_traceparent,
    new_span_id,
    new_trace_id,
    parse_traceparent,
    post,
)
from tests.observability.otlp_collector import OtlpCollector
from tests.support.net import free_port

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f"00-{TRACE}-{PARENT}-01", TraceParent(TRACE, PARENT, 1)),
        (f"00-{TRACE}-{PARENT}-00", TraceParent(TRACE, PARENT, 0)),
        (f"00-{TRACE}-{PARENT}-09", TraceParent(TRACE, PARENT, 9)),
        (f" 00-{TRACE}-{PARENT}-01 ", TraceParent(TRACE, PARENT, 1)),  # optional whitespace
        # A later version may append fields; its first four are read as version 00's.
        (f"01-{TRACE}-{PARENT}-01-what-the-future-holds", TraceParent(TRACE, PARENT, 1)),
        (f"cc-{TRACE}-{PARENT}-01", TraceParent(TRACE, PARENT, 1)),
        # Invalid ones.
        (f"ff-{TRACE}-{PARENT}-01", None),  # version ff is forbidden
        (f"00-{TRACE}-{PARENT}-01-extra", None),  # version 00 has exactly four fields
        (f"01-{TRACE}-{PARENT}-01extra", None),  # fields after the flags need a separator
        (f"00-{TRACE.upper()}-{PARENT}-01", None),  # lower-case hex only
        (f"00-{'0' * 32}-{PARENT}-01", None),  # all-zero trace id
        (f"00-{TRACE}-{'0' * 16}-01", None),  # all-zero parent id
        (f"00-{TRACE[:-1]}-{PARENT}-01", None),
        (f"00-{TRACE}-{PARENT}-1", None),
        (f"00_{TRACE}_{PARENT}_01", None),
        (f"0g-{TRACE}-{PARENT}-01", None),
        (f"00-{TRACE[:-1]}x-{PARENT}-01", None),
        (f"00-{TRACE}-{PARENT}-0x", None),
        ("", None),
        ("garbage", None),
    ],
)
def test_parse_traceparent(value: str, expected: TraceParent | None) -> None:
    assert parse_traceparent(value.encode()) == expected
    assert parse_traceparent(value) == expected


@given(st.binary(max_size=80))
def test_parse_traceparent_never_raises(value: bytes) -> None:
    parsed = parse_traceparent(value)
    if parsed is not None:
        assert len(parsed.trace_id) == 32
        assert len(parsed.parent_id) == 16


def test_new_ids_round_trip_through_traceparent() -> None:
    for sampled in (True, False):
        trace_id, span_id = new_trace_id(), new_span_id()
        parsed = parse_traceparent(format_traceparent(trace_id, span_id, sampled))
        assert parsed == TraceParent(trace_id, span_id, int(sampled))
    assert len({new_trace_id() for _ in range(1000)}) == 1000


def test_ratio_sampler() -> None:
    ids = [new_trace_id() for _ in range(4000)]
    assert all(RatioSampler(1).sample(i) for i in ids)
    assert not any(RatioSampler(0).sample(i) for i in ids)
    half = RatioSampler(0.5)
    share = sum(half.sample(i) for i in ids) / len(ids)
    assert 0.45 < share < 0.55
    # The decision belongs to the trace id: every gateway with the same rate agrees.
    assert [half.sample(i) for i in ids] == [RatioSampler(0.5).sample(i) for i in ids]
    with pytest.raises(ValueError):
        RatioSampler(1.5)


def _span(name: str = "GET r", parent: str | None = PARENT) -> Span:
    return Span(
        TRACE, new_span_id(), parent, name, SPAN_KIND_SERVER, 1_000, 2_000, {"a": "b", "n": 3, "ok": True}
    )


def test_otlp_json_encoding() -> None:
    import json

    body = json.loads(encode_otlp_json([_span(), _span(parent=None)], {"service.name": "forecourt"}))
    resource = body["resourceSpans"][0]
    assert resource["resource"]["attributes"] == [
        {"key": "service.name", "value": {"stringValue": "forecourt"}}
    ]
    spans = resource["scopeSpans"][0]["spans"]
    assert spans[0]["traceId"] == TRACE
    assert spans[0]["parentSpanId"] == PARENT
    assert "parentSpanId" not in spans[1]
    assert spans[0]["kind"] == SPAN_KIND_SERVER
    assert spans[0]["startTimeUnixNano"] == "1000"
    assert {"key": "n", "value": {"intValue": "3"}} in spans[0]["attributes"]
    assert {"key": "ok", "value": {"boolValue": True}} in spans[0]["attributes"]


# ---------------------------------------------------------------------------------------------- export
@pytest.fixture
def collector() -> Iterator[OtlpCollector]:
    server = OtlpCollector().start()
    yield server
    server.stop()


def _settings(url: str, **overrides: float) -> ExportSettings:
    values: dict[str, float] = {
        "max_batch_size": 3,
        "max_coalescing_delay": 0.05,
        "initial_retry_delay": 0.01,
        "max_retry_time": 2.0,
        "connect_timeout": 1.0,
    }
    values.update(overrides)
    return ExportSettings(
        url=url, headers={"Authorization": "Bearer t"}, resource={"service.name": "x"}, **values
    )  # type: ignore[arg-type]


async def _wait(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for _ in range(100_000):
        if condition():
            return
        if loop.time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.01)


def test_exporter_batches_and_sends_headers(collector: OtlpCollector) -> None:
    asyncio.run(_exporter_batches_and_sends_headers(collector))


async def _exporter_batches_and_sends_headers(collector: OtlpCollector) -> None:
    exporter = OtlpExporter(_settings(collector.url))
    exporter.start()
    for _ in range(7):
        assert exporter.submit(_span())
    await _wait(lambda: len(collector.spans()) == 7)
    await exporter.close()
    sizes = [len(body["resourceSpans"][0]["scopeSpans"][0]["spans"]) for _, _, body in collector.requests]
    assert sizes == [3, 3, 1]  # full batches at once, the rest after the coalescing delay
    path, headers, _ = collector.requests[0]
    assert path == "/v1/traces"
    assert headers["content-type"] == "application/json"
    assert headers["authorization"] == "Bearer t"
    assert exporter.exported == 7
    assert exporter.dropped == 0


def test_exporter_retries_retryable_statuses() -> None:
    asyncio.run(_exporter_retries_retryable_statuses())


async def _exporter_retries_retryable_statuses() -> None:
    server = OtlpCollector(statuses=[503, 429]).start()
    try:
        exporter = OtlpExporter(_settings(server.url))
        exporter.start()
        exporter.submit(_span())
        await _wait(lambda: len(server.spans()) == 1)
        await exporter.close()
        assert exporter.dropped == 0
    finally:
        server.stop()


def test_exporter_drops_a_batch_the_collector_refuses() -> None:
    asyncio.run(_exporter_drops_a_batch_the_collector_refuses())


async def _exporter_drops_a_batch_the_collector_refuses() -> None:
    server = OtlpCollector(statuses=[400]).start()
    try:
        exporter = OtlpExporter(_settings(server.url))
        exporter.start()
        exporter.submit(_span())
        await _wait(lambda: exporter.dropped == 1)
        exporter.submit(_span("second"))
        await _wait(lambda: len(server.spans()) == 1)
        assert server.spans()[0]["name"] == "second"
        await exporter.close()
    finally:
        server.stop()


def test_exporter_queue_is_bounded_and_close_is_bounded() -> None:
    asyncio.run(_exporter_queue_is_bounded_and_close_is_bounded())


async def _exporter_queue_is_bounded_and_close_is_bounded() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1/traces"  # nothing listens: connection refused
    exporter = OtlpExporter(_settings(url, max_entries=5, max_batch_size=100, max_coalescing_delay=10))
    exporter.start()
    accepted = [exporter.submit(_span()) for _ in range(8)]
    assert accepted == [True] * 5 + [False] * 3
    assert exporter.dropped == 3
    loop = asyncio.get_running_loop()
    started = loop.time()
    await exporter.close(timeout=1.0)
    assert loop.time() - started < 1.5
    assert exporter.dropped == 8
    assert not exporter.submit(_span())  # closed


def test_post_reports_connection_failures_as_retryable() -> None:
    asyncio.run(_post_reports_connection_failures_as_retryable())


async def _post_reports_connection_failures_as_retryable() -> None:
    with pytest.raises(ExportError) as caught:
        await post(
            f"http://127.0.0.1:{free_port()}/v1/traces",
            b"{}",
            {},
            connect_timeout=1,
            send_timeout=1,
            read_timeout=1,
        )
    assert caught.value.retryable
    with pytest.raises(ExportError) as refused:
        await post("ftp://x/y", b"", {}, connect_timeout=1, send_timeout=1, read_timeout=1)
    assert not refused.value.retryable
