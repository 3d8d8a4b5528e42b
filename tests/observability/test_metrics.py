"""The metric registry, the text format and the aggregation of worker processes' snapshots."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from forecourt.observability.metrics import (
    CONTENT_TYPE,
    MetricsRegistry,
    MetricsStore,
    ScrapeSources,
    render_metrics,
)


def samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, keyed by (sample name, sorted labels); also checks the format."""
    found = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def make_registry() -> MetricsRegistry:
    registry = MetricsRegistry()
    registry.counter("t_requests_total", "Requests", ("route", "code"))
    registry.histogram("t_latency_ms", "Latency", ("route",), (1, 5, 10))
    return registry


# ---------------------------------------------------------------------------------------------- registry
def test_declaring_a_family_twice_returns_it_and_a_different_shape_is_an_error() -> None:
    registry = make_registry()
    first = registry.families["t_requests_total"]
    assert registry.counter("t_requests_total", "Requests", ("route", "code")) is first
    with pytest.raises(ValueError, match="already declared differently"):
        registry.counter("t_requests_total", "Requests", ("route",))
    with pytest.raises(ValueError, match="ascending"):
        registry.histogram("t_bad", "x", (), (5, 1))


def test_labels_must_match_the_family() -> None:
    family = make_registry().families["t_requests_total"]
    with pytest.raises(ValueError, match="expected labels"):
        family.labels("only-one")
    assert family.counter("r", "200") is family.counter("r", "200")


@pytest.mark.parametrize(
    ("value", "bucket"),
    [
        (0.0, "1.0"),
        (1.0, "1.0"),
        (1.0001, "5.0"),
        (5.0, "5.0"),
        (9.99, "10.0"),
        (10.0, "10.0"),
        (10.5, "+Inf"),
    ],
)
def test_histogram_bounds_are_inclusive(value: float, bucket: str) -> None:
    registry = make_registry()
    registry.families["t_latency_ms"].histogram("r").observe(value)
    _, body = render_metrics(registry=registry)
    found = samples(body)
    bounds = ["1.0", "5.0", "10.0", "+Inf"]
    for bound in bounds:
        expected = 1.0 if bounds.index(bound) >= bounds.index(bucket) else 0.0
        assert found[("t_latency_ms_bucket", (("le", bound), ("route", "r")))] == expected
    assert found[("t_latency_ms_count", (("route", "r"),))] == 1
    assert found[("t_latency_ms_sum", (("route", "r"),))] == pytest.approx(value)


def test_text_format_counts_sums_and_escapes_labels() -> None:
    registry = make_registry()
    requests = registry.families["t_requests_total"]
    requests.counter("a", "200").value += 3
    requests.counter('we"ird\\route\n', "503").value += 1
    latency = registry.families["t_latency_ms"].histogram("a")
    for value in (0.5, 3, 3, 7, 100):
        latency.observe(value)
    content_type, body = render_metrics(registry=registry)
    assert content_type == CONTENT_TYPE
    text = body.decode()
    assert "# TYPE t_requests_total counter" in text
    assert "# TYPE t_latency_ms histogram" in text
    assert 'route="we\\"ird\\\\route\\n"' in text
    found = samples(body)
    assert found[("t_requests_total", (("code", "200"), ("route", "a")))] == 3
    assert found[("t_requests_total", (("code", "503"), ("route", 'we"ird\\route\n')))] == 1
    buckets = [
        found[("t_latency_ms_bucket", (("le", le), ("route", "a")))] for le in ("1.0", "5.0", "10.0", "+Inf")
    ]
    assert buckets == [1, 3, 4, 5]
    assert found[("t_latency_ms_sum", (("route", "a"),))] == pytest.approx(113.5)


def test_empty_families_are_left_out() -> None:
    _, body = render_metrics(registry=make_registry())
    assert b"t_requests_total" not in body
    assert b"kong_datastore_reachable 1" in body


def test_scrape_sources_add_kong_node_gauges() -> None:
    counters = {
        "connections_accepted": 5,
        "connections_handled": 5,
        "total_requests": 9,
        "connections_active": 2,
        "connections_reading": 0,
        "connections_writing": 1,
        "connections_waiting": 1,
    }
    _, body = render_metrics(ScrapeSources("node-1", "0.1.0", counters), registry=make_registry())
    found = samples(body)
    node = ("node_id", "node-1")
    assert found[("kong_nginx_connections_total", (node, ("state", "accepted"), ("subsystem", "http")))] == 5
    assert found[("kong_nginx_connections_total", (node, ("state", "total"), ("subsystem", "http")))] == 9
    assert found[("kong_nginx_connections_total", (node, ("state", "writing"), ("subsystem", "http")))] == 1
    assert found[("kong_nginx_requests_total", (node, ("subsystem", "http")))] == 9
    assert found[("kong_node_info", (node, ("version", "0.1.0")))] == 1


# ---------------------------------------------------------------------------------------------- workers
def test_other_workers_snapshots_are_summed_with_the_live_registry(tmp_path: Path) -> None:
    mine, other = make_registry(), make_registry()
    mine.families["t_requests_total"].counter("a", "200").value += 2
    mine.families["t_latency_ms"].histogram("a").observe(3)
    other.families["t_requests_total"].counter("a", "200").value += 5
    other.families["t_requests_total"].counter("b", "404").value += 1
    other.families["t_latency_ms"].histogram("a").observe(7)
    # The other worker is alive: use the parent process's pid for its file.
    MetricsStore(tmp_path, pid=os.getppid()).publish(other.snapshot())
    store = MetricsStore(tmp_path)
    store.publish(mine.snapshot())  # our own file is skipped: the live registry counts instead
    mine.families["t_requests_total"].counter("a", "200").value += 1
    found = samples(render_metrics(registry=mine, store=store)[1])
    assert found[("t_requests_total", (("code", "200"), ("route", "a")))] == 8
    assert found[("t_requests_total", (("code", "404"), ("route", "b")))] == 1
    assert found[("t_latency_ms_count", (("route", "a"),))] == 2
    assert found[("t_latency_ms_bucket", (("le", "5.0"), ("route", "a")))] == 1


def test_publish_skips_unchanged_snapshots(tmp_path: Path) -> None:
    registry = make_registry()
    store = MetricsStore(tmp_path)
    registry.families["t_requests_total"].counter("a", "200").value += 1
    assert store.publish(registry.snapshot())
    assert not store.publish(registry.snapshot())
    registry.families["t_requests_total"].counter("a", "200").value += 1
    assert store.publish(registry.snapshot())


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_dead_workers_still_count_and_are_folded_into_retired(tmp_path: Path) -> None:
    first, second = make_registry(), make_registry()
    first.families["t_requests_total"].counter("a", "200").value += 4
    second.families["t_requests_total"].counter("a", "200").value += 6
    second.families["t_latency_ms"].histogram("a").observe(2)
    MetricsStore(tmp_path, pid=_dead_pid()).publish(first.snapshot())
    MetricsStore(tmp_path, pid=_dead_pid()).publish(second.snapshot())
    fresh = make_registry()
    store = MetricsStore(tmp_path)
    before = samples(render_metrics(registry=fresh, store=store)[1])
    assert before[("t_requests_total", (("code", "200"), ("route", "a")))] == 10
    store.retire_dead()  # what a worker does when it starts
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["retired.json"]
    after = samples(render_metrics(registry=fresh, store=store)[1])
    assert after == before
    # Retiring again (another restart) keeps the sums; it does not double them.
    MetricsStore(tmp_path).retire_dead()
    assert samples(render_metrics(registry=fresh, store=store)[1]) == before


_WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from forecourt.observability import metrics

    async def main() -> None:
        publisher = metrics.configure(sys.argv[1])
        family = metrics.REGISTRY.counter("t_worker_requests_total", "x", ("worker",))
        family.counter("all").value += int(sys.argv[2])
        latency = metrics.REGISTRY.histogram("t_worker_latency_ms", "x", (), (10, 100))
        for _ in range(int(sys.argv[2])):
            latency.histogram().observe(50)
        publisher.close()

    asyncio.run(main())
    """
)


def test_real_worker_processes_are_aggregated(tmp_path: Path) -> None:
    """Two processes configure the same metrics directory, count, and exit; a scrape sums them."""
    directory = tmp_path / "metrics"
    procs = [
        subprocess.run([sys.executable, "-c", _WORKER, str(directory), str(n)], check=True, timeout=30)
        for n in (3, 4)
    ]
    assert all(p.returncode == 0 for p in procs)
    found = samples(render_metrics(registry=MetricsRegistry(), store=MetricsStore(directory))[1])
    assert found[("t_worker_requests_total", (("worker", "all"),))] == 7
    assert found[("t_worker_latency_ms_bucket", (("le", "100.0"),))] == 7
    assert found[("t_worker_latency_ms_bucket", (("le", "10.0"),))] == 0
