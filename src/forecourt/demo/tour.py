"""`forecourt demo`: demo services behind a gateway running `examples/seed-routing.yaml`.

The seed config names `order-service` and `user-service` as upstreams; the demo starts one demo
service per upstream target on 127.0.0.1 and a gateway in this process, then prints what to try.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

from forecourt.config import load_config
from forecourt.demo.service import DemoService

_SEED = "examples/seed-routing.yaml"


def _find_config(path: str | None) -> Path:
    if path:
        return Path(path)
    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):
        candidate = base / _SEED
        if candidate.is_file():
            return candidate
    raise SystemExit(f"forecourt demo: cannot find {_SEED}; pass --config FILE")


def run_demo(config_path: str | None, listen: str) -> int:
    """Start the demo services and the gateway; serve until Ctrl-C."""
    from forecourt.gateway import RunOptions, serve

    path = _find_config(config_path)
    config = load_config(path)
    services: dict[str, tuple[str, int]] = {}
    for upstream in config.upstreams:
        for target in upstream.targets:
            services[f"{upstream.name}@{target.port}"] = (target.host, target.port)

    async def main() -> None:
        servers = []
        for name, (host, port) in services.items():
            servers.append(
                await DemoService(name.split("@")[0], {"instance": f"{host}:{port}"}).serve(host, port)
            )
        ready = asyncio.Event()
        options = RunOptions(files=[str(path)], listen=[listen], access_log="-")
        gateway = asyncio.create_task(serve(options, ready))
        await ready.wait()
        _print_tour(listen, sorted(services))
        try:
            await gateway
        finally:
            for server in servers:
                server.close()

    import uvloop

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(main())
    return 0


def _print_tour(listen: str, services: list[str]) -> None:
    base = "http://" + listen.replace("0.0.0.0", "127.0.0.1")
    lines = [
        "",
        "Forecourt demo: the seed routing example (examples/seed-routing.yaml)",
        f"  demo services: {', '.join(services)}",
        f"  gateway:       {base}",
        "",
        "Try:",
        f"  curl -i {base}/api/orders/42          # -> order-service (round-robin over its instances)",
        f"  curl -i {base}/api/users/7            # -> user-service",
        f"  curl -i {base}/api/orders/../admin    # normalised to /api/admin: no route, 404",
        f"  curl -i {base}/nowhere                # Kong's 404 body",
        "Each response carries X-Forecourt-Request-Id and latency headers; the access log is on stdout.",
        "Ctrl-C stops everything.",
        "",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)
