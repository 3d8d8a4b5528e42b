"""The `forecourt` command line (ARCHITECTURE.md §2)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="forecourt", description="API gateway configured in Kong's format.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one gateway per config FILE")
    run.add_argument("files", nargs="+", metavar="FILE", help="Kong-format declarative config (YAML or JSON)")
    run.add_argument(
        "--listen",
        action="append",
        metavar="ADDR",
        help="proxy listener, e.g. 0.0.0.0:8000 or '0.0.0.0:8443 ssl' (repeatable; overrides the file's "
        "`listen`; only with one FILE); default 0.0.0.0:8000",
    )
    run.add_argument("--admin-listen", default="127.0.0.1:8001", metavar="ADDR", help="admin API listener")
    run.add_argument(
        "--workers",
        default="1",
        type=_workers,
        metavar="N|auto",
        help="worker processes under one supervisor; auto = one per CPU (default 1)",
    )
    run.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="on SIGTERM/SIGINT, how long requests in flight may take to finish (default 30)",
    )
    run.add_argument(
        "--state-dir",
        metavar="DIR",
        help="the run's state directory (config overrides from the admin API, last good configs); "
        "default a private temporary directory removed at exit",
    )
    run.add_argument(
        "--access-log", default="-", metavar="PATH", help="access log path, '-' (stdout) or 'off'"
    )
    run.add_argument("--dns-resolver", metavar="HOST:PORT", help="DNS server for upstream hostnames")
    run.add_argument("--redis", metavar="URL", help="Redis for shared counters and caches")
    run.add_argument(
        "--trusted-ips",
        type=_cidrs,
        default=(),
        metavar="CIDR,...",
        help="proxies whose X-Forwarded-For is believed when finding the client IP (default: none)",
    )
    limits = run.add_argument_group("client limits (per connection; sizes accept k/m suffixes)")
    limits.add_argument(
        "--header-timeout", type=float, metavar="SECONDS", help="time to receive a request head (default 60)"
    )
    limits.add_argument(
        "--body-timeout",
        type=float,
        metavar="SECONDS",
        help="longest pause while receiving a request body (default 60)",
    )
    limits.add_argument(
        "--keepalive-timeout",
        type=float,
        metavar="SECONDS",
        help="idle time before a keep-alive connection is closed (default 60)",
    )
    limits.add_argument(
        "--max-body-size",
        type=_size,
        metavar="BYTES",
        help="largest request body; larger answers 413 (default 64m)",
    )
    limits.add_argument(
        "--max-request-line",
        type=_size,
        metavar="BYTES",
        help="longest request target; longer answers 414 (default 8k)",
    )
    limits.add_argument(
        "--max-header-size",
        type=_size,
        metavar="BYTES",
        help="largest header block; larger answers 431 (default 32k)",
    )
    limits.add_argument(
        "--max-headers",
        type=int,
        metavar="N",
        help="most request header fields; more answers 431 (default 100)",
    )

    check = sub.add_parser("check", help="validate config files and print every error")
    check.add_argument("files", nargs="+", metavar="FILE")

    demo = sub.add_parser(
        "demo", help="run demo services, the registry, a gateway and three BFFs; print a tour to try"
    )
    demo.add_argument(
        "--base-port",
        type=int,
        default=8000,
        metavar="PORT",
        help="move every demo port by PORT-8000 (gateways 8000/8100/8200/8300, admin 8001, "
        "registry 8761, services 9101-9501 by default)",
    )
    demo.add_argument("--examples", metavar="DIR", help="the examples/ directory (default: found)")
    _add_discovery_commands(sub)
    return parser


def _add_discovery_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`registry` and `resolve` (docs/registry.md)."""
    registry = sub.add_parser("registry", help="run the built-in Eureka-compatible service registry")
    registry.add_argument("--listen", default="127.0.0.1:8761", type=_hostport, metavar="ADDR")
    registry.add_argument(
        "--data", metavar="FILE", help="persist registrations to FILE (default: memory only)"
    )
    registry.add_argument(
        "--renew-interval",
        type=int,
        default=30,
        metavar="SECONDS",
        help="heartbeat interval for instances that state none (default 30)",
    )
    registry.add_argument(
        "--lease-expiration",
        type=int,
        default=90,
        metavar="SECONDS",
        help="lease duration for instances that state none: silent this long, evicted (default 90)",
    )
    registry.add_argument(
        "--eviction-interval",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how often expired leases are evicted (default 5)",
    )
    registry.add_argument(
        "--health-check-interval",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="probe each instance's healthCheckUrl this often; 0 = off (default 0)",
    )
    registry.add_argument("--health-check-timeout", type=float, default=2.0, metavar="SECONDS")
    resolve = sub.add_parser("resolve", help="print the instances of a service: host:port status")
    resolve.add_argument("name", metavar="NAME", help="application name, e.g. ORDER-SERVICE")
    resolve.add_argument(
        "--registry",
        metavar="URL",
        help="Eureka base URL (default $FORECOURT_REGISTRY or http://127.0.0.1:8761/eureka/)",
    )
    resolve.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS")


def _hostport(value: str) -> tuple[str, int]:
    """`127.0.0.1:8761` or `[::1]:8761` → (host, port)."""
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"invalid address {value!r}: expected HOST:PORT")
    return host, int(port)


def _workers(value: str) -> str:
    """`auto` or a positive number of worker processes."""
    if value != "auto" and not (value.isdigit() and int(value) > 0):
        raise argparse.ArgumentTypeError(
            f"invalid worker count {value!r}: expected a positive number or 'auto'"
        )
    return value


def _cidrs(value: str) -> tuple[str, ...]:
    """`10.0.0.0/8,::1` → the addresses or networks, each checked."""
    import ipaddress

    items = tuple(item.strip() for item in value.split(",") if item.strip())
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"invalid trusted address {item!r}: {exc}") from exc
    return items


def _size(value: str) -> int:
    """`65536`, `64k` or `64m` → bytes."""
    text = value.strip().lower()
    scale = {"k": 1024, "m": 1024 * 1024}.get(text[-1:], 1)
    digits = text[:-1] if scale != 1 else text
    if not digits.isdigit():
        raise argparse.ArgumentTypeError(f"invalid size {value!r}: expected bytes, e.g. 65536, 64k or 8m")
    return int(digits) * scale


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check":
        from forecourt.gateway import check_files

        return check_files(args.files)
    if args.command == "run":
        from forecourt.gateway import RunOptions, run

        return run(RunOptions.from_args(args))
    if args.command == "demo":
        from forecourt.demo.tour import run_demo

        return run_demo(args.base_port, args.examples)
    if args.command == "registry":
        from forecourt.registry.server import RegistryOptions, run_registry

        return run_registry(RegistryOptions.from_args(args))
    if args.command == "resolve":
        from forecourt.discovery.client import resolve_command

        return resolve_command(args.name, args.registry, args.timeout)
    return 2


if __name__ == "__main__":
    sys.exit(main())
