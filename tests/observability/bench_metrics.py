"""Micro-benchmark of the per-request cost of metrics and tracing, against prometheus_client.

Not collected by pytest (no `test_` prefix). Run: `.venv/bin/python tests/observability/bench_metrics.py`.

Prints µs per request for: the `prometheus` plugin's log phase with every metric group on; the
same six updates through prometheus_client's pre-bound children, in single-process and in
multiprocess mode (what aggregating across workers with it would cost); and the `opentelemetry`
plugin's access + log phases (no export, and export to a queue).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import timeit
from collections.abc import Callable
from typing import Any

from forecourt.pipeline import PluginEnv, PluginScope

NUMBER = 100_000


def per_call_us(func: Callable[[], object], number: int = NUMBER) -> float:
    best = min(timeit.repeat(func, number=number, repeat=5))
    return best / number * 1e6


class Fake:
    """An attribute bag that hashes by identity (the plugin keys its cache by route object)."""

    def __init__(self, **attributes: Any) -> None:
        self.__dict__.update(attributes)


def fake_request() -> tuple[Any, Any]:
    """A ctx/exchange pair with what the log phases read (the real ones need a live connection)."""
    loop = Fake(time=lambda: 1000.012)
    runtime = Fake(loop=loop)
    service = Fake(name="orders")
    route = Fake(name="orders-route", service=service)
    req = Fake(
        start=1000.0,
        body_bytes=120,
        method="GET",
        raw_path="/orders/1",
        request_id="r1",
        headers=[(b"host", b"api"), (b"accept", b"*/*"), (b"user-agent", b"bench")],
    )
    endpoint = Fake(ip="10.0.0.1", port=8080, label="orders:8080")
    ex = Fake(
        runtime=runtime,
        req=req,
        status=200,
        response_bytes=2048,
        t_sent=1000.001,
        t_first_byte=1000.010,
        bytes_sent_upstream=True,
        endpoint=endpoint,
        attempts=1,
    )
    ctx = Fake(exchange=ex, route=route, consumer=None, shared={}, req=req, client_ip="10.1.1.1")
    return ctx, ex


def bench_prometheus_plugin() -> float:
    from forecourt.plugins.prometheus import PrometheusConfig, PrometheusPlugin

    config = PrometheusConfig(status_code_metrics=True, latency_metrics=True, bandwidth_metrics=True)
    plugin = PrometheusPlugin(config, PluginScope(), PluginEnv(gateway="bench"))
    ctx, _ = fake_request()
    return per_call_us(lambda: plugin.log(ctx))


def bench_opentelemetry_plugin(export: bool) -> float:
    from forecourt.observability.tracing import ExportSettings, OtlpExporter
    from forecourt.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin

    plugin = OpenTelemetryPlugin(OpenTelemetryConfig(), PluginScope(), PluginEnv(gateway="bench"))
    if export:
        exporter = OtlpExporter(ExportSettings(url="http://127.0.0.1:1/v1/traces", max_entries=10**9))
        plugin.exporter = exporter
    ctx, ex = fake_request()
    headers = list(ex.req.headers)

    def one() -> None:
        ctx.shared = {}
        ex.req.headers = list(headers)
        plugin.access(ctx)  # type: ignore[arg-type]
        plugin.log(ctx)  # type: ignore[arg-type]
        if export:
            exporter.queue.clear()

    # Context.set_header/remove_header come from the real class: bind them onto the fake.
    from forecourt.pipeline import Context

    ctx.set_header = lambda n, v: Context.set_header(ctx, n, v)  # type: ignore[arg-type]
    ctx.remove_header = lambda n: Context.remove_header(ctx, n)  # type: ignore[arg-type]
    return per_call_us(one, number=NUMBER // 4)


_PROMETHEUS_CLIENT = """
import os, sys, timeit
if sys.argv[1] == "multiprocess":
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[2]
from prometheus_client import Counter, Histogram
k = (1, 2, 5, 7, 10, 15, 20, 30, 50, 75, 100, 200, 500, 750, 1000)
u = (25, 50, 80, 100, 250, 400, 700, 1000, 2000, 5000, 10000, 30000, 60000)
labels = ["service", "route", "code", "source", "consumer"]
requests = Counter("r_total", "x", labels).labels("s", "r", "200", "service", "")
kong = Histogram("k_ms", "x", ["service", "route"], buckets=k).labels("s", "r")
upstream = Histogram("u_ms", "x", ["service", "route"], buckets=u).labels("s", "r")
total = Histogram("t_ms", "x", ["service", "route"], buckets=u).labels("s", "r")
bandwidth = Counter("b", "x", ["service", "route", "direction", "consumer"])
ingress, egress = bandwidth.labels("s", "r", "ingress", ""), bandwidth.labels("s", "r", "egress", "")
def one():
    requests.inc(); kong.observe(1.0); upstream.observe(9.0); total.observe(12.0)
    ingress.inc(120); egress.inc(2048)
n = 100_000
print(min(timeit.repeat(one, number=n, repeat=5)) / n * 1e6)
"""


def bench_prometheus_client(mode: str) -> float:
    with tempfile.TemporaryDirectory() as directory:
        out = subprocess.run(
            [sys.executable, "-c", _PROMETHEUS_CLIENT, mode, directory],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
    return float(out.stdout)


def main() -> None:
    cases: list[tuple[str, Callable[[], float]]] = [
        ("prometheus plugin log phase (all groups on)", bench_prometheus_plugin),
        ("prometheus_client, same 6 updates, single process", lambda: bench_prometheus_client("single")),
        ("prometheus_client, same 6 updates, multiprocess", lambda: bench_prometheus_client("multiprocess")),
        ("opentelemetry access+log, no export", lambda: bench_opentelemetry_plugin(False)),
        ("opentelemetry access+log, 2 spans queued for export", lambda: bench_opentelemetry_plugin(True)),
    ]
    for label, run in cases:
        print(f"{label + ':':55s} {run():6.2f} µs/request")


if __name__ == "__main__":
    main()
