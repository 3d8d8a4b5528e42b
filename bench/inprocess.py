#!/usr/bin/env python3
"""The Python cost of one proxied request, without sockets: a tool for tuning the hot path.

A real `ClientConnection` and `UpstreamConnection` (with in-memory transports) are fed the
benchmark's realistic request and a small upstream response, in a loop; the best of five batches
is printed in µs per request. Pin it for stable figures:

    taskset -c 0 .venv/bin/python bench/inprocess.py                      # plain route
    taskset -c 0 .venv/bin/python bench/inprocess.py --scenario offload-local
    taskset -c 0 .venv/bin/python bench/inprocess.py --access-log off     # without the log's cost

Which build runs (compiled or pure Python) is printed first. For instruction counts run it under
`valgrind --tool=callgrind` with two `--requests` values and divide the difference (see
docs/performance.md). The live ratio against nginx is `bench/run.py`'s job, not this one's.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import uvloop

REPO = Path(__file__).resolve().parent.parent
REQUEST = (
    b"GET /bench HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0\r\n"
    b"Accept: application/json, text/plain, */*\r\nAccept-Language: en-US,en;q=0.9\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\n"
    b"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlc2lnbmF0dXJl\r\n"
    b"X-Request-Id: 6f1c2a9e-3b7d-4c1e-9a55-0d2b8e4f7a11\r\nCookie: session=abcdef0123456789; theme=dark\r\n"
    b"Referer: https://app.example.com/dashboard\r\nX-Forwarded-Proto: https\r\n"
    b"Cache-Control: no-cache\r\n\r\n"
)
BODY = b'{"status":"ok","service":"upstream","id":12345,"message":"hello from the fast upstream"}'
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Tue, 24 Nov 2026 22:00:00 GMT\r\n"
    b"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: keep-alive\r\n\r\n" % len(BODY)
) + BODY


class MemoryTransport:
    """What the protocols use of a transport; writes are kept to be counted."""

    def __init__(self) -> None:
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name in ("peername", "sockname") else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def measure(config: Path, requests: int, access_log: str) -> float:
    import forecourt
    from forecourt.config import load_config
    from forecourt.http.server import ClientConnection
    from forecourt.http.upstream import UpstreamConnection
    from forecourt.observability import AccessLog
    from forecourt.plan.build import PlanBuilder
    from forecourt.runtime import GatewayRuntime, Listener

    print(f"forecourt: {forecourt.NATIVE_STATUS}", flush=True)
    builder = PlanBuilder()
    plan = builder.build(load_config(str(config), builder.registry))
    await builder.prepare(plan)
    runtime = GatewayRuntime(plan, loop=asyncio.get_running_loop(), access_log=AccessLog.open(access_log))
    client = ClientConnection(runtime, Listener("127.0.0.1", 8000))
    client_transport = MemoryTransport()
    client.connection_made(cast(asyncio.Transport, client_transport))
    endpoint = plan.services["bench"].targets.balancer.pick(None)
    assert endpoint is not None
    upstream = UpstreamConnection(runtime.pool, endpoint.key)
    upstream.connection_made(cast(asyncio.Transport, MemoryTransport()))
    runtime.pool.all.add(upstream)  # a warm pooled connection, as under keep-alive load
    runtime.pool.open[endpoint.key] = 1
    runtime.pool.idle[endpoint.key] = [upstream]
    gc.collect()
    gc.freeze()  # as the workers do after start-up
    feed_client, feed_upstream = client.data_received, upstream.data_received
    best = float("inf")
    for _ in range(5):
        client_transport.out.clear()
        started = time.perf_counter()
        for _ in range(requests):
            feed_client(REQUEST)
            feed_upstream(RESPONSE)
        best = min(best, (time.perf_counter() - started) / requests * 1e6)
        assert len(client_transport.out) == requests, client_transport.out[:2]
    runtime.access_log.flush()
    return best


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", default="plain", help="a bench/configs/ name (default: plain)")
    parser.add_argument("--requests", type=int, default=20000, help="requests per batch (five batches)")
    parser.add_argument("--access-log", default="/dev/null", help="a path, or 'off' (default: /dev/null)")
    args = parser.parse_args()
    template = (REPO / "bench" / "configs" / f"{args.scenario}.yaml").read_text()
    with tempfile.TemporaryDirectory() as workdir:
        config = Path(workdir) / "kong.yml"
        # The upstream is never dialled (the connection above is already in the pool).
        config.write_text(template.replace("{upstream_port}", "9").replace("{redis_port}", "6379"))
        per_request = uvloop.run(measure(config, args.requests, args.access_log))
    print(f"{per_request:.2f} µs per request (best of 5 x {args.requests}, {args.scenario})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
