"""Aggregate latency: three backends that each take 50 ms, fanned out in parallel and in sequence.

Not collected by pytest (no `test_` prefix). Run: `.venv/bin/python tests/integration/bench_aggregate.py [N]`.

Starts three demo backends and one gateway (one worker) on 127.0.0.1, warms the pooled connections,
then sends N (default 200) sequential requests per route and prints p50/p99/max in milliseconds:

* `/parallel`: the three backends fan out at once; expect about 50 ms.
* `/sequential`: each backend `depends_on` the previous one; expect about 150 ms.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support.gateway import GatewayProcess
from tests.support.upstreams import DemoUpstream


def config(ports: list[int]) -> dict[str, Any]:
    names = ["orders", "users", "recommendations"]
    services = [{"name": n, "url": f"http://127.0.0.1:{p}"} for n, p in zip(names, ports, strict=True)]
    parallel = [{"name": n, "service": n, "path": "/delay/50"} for n in names]
    sequential = [
        {"name": n, "service": n, "path": "/delay/50", "depends_on": [names[i - 1]] if i else []}
        for i, n in enumerate(names)
    ]
    routes = [
        {"name": "parallel", "paths": ["/parallel"], "aggregate": {"timeout": 1000, "backends": parallel}},
        {
            "name": "sequential",
            "paths": ["/sequential"],
            "aggregate": {"timeout": 1000, "backends": sequential},
        },
    ]
    return {"_format_version": "3.0", "services": services, "routes": routes}


def measure(client: httpx.Client, path: str, count: int) -> list[float]:
    for _ in range(10):
        assert client.get(path).headers["X-Forecourt-Completed"] == "true"
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.get(path)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200 and response.headers["X-Forecourt-Completed"] == "true"
    return samples


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    backends = [DemoUpstream(f"b{i}").start() for i in range(3)]
    gateway = GatewayProcess(
        config([b.port for b in backends]), Path(tempfile.mkdtemp()), "--access-log", "off"
    )
    gateway.start()
    try:
        with httpx.Client(base_url=gateway.url, timeout=10) as client:
            for path in ("/parallel", "/sequential"):
                samples = sorted(measure(client, path, count))
                p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
                print(
                    f"{path:12} n={count} p50={statistics.median(samples):.1f} ms "
                    f"p99={p99:.1f} ms max={samples[-1]:.1f} ms"
                )
    finally:
        gateway.stop()
        for backend in backends:
            backend.stop()


if __name__ == "__main__":
    main()
