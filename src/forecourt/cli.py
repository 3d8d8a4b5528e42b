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
    run.add_argument("--workers", default="1", metavar="N|auto", help="worker processes (default 1)")
    run.add_argument(
        "--access-log", default="-", metavar="PATH", help="access log path, '-' (stdout) or 'off'"
    )
    run.add_argument("--dns-resolver", metavar="HOST:PORT", help="DNS server for upstream hostnames")
    run.add_argument("--redis", metavar="URL", help="Redis for shared counters and caches")

    check = sub.add_parser("check", help="validate config files and print every error")
    check.add_argument("files", nargs="+", metavar="FILE")

    demo = sub.add_parser("demo", help="run demo services behind a demo gateway and print what to try")
    demo.add_argument("--config", metavar="FILE", help="gateway config (default: examples/seed-routing.yaml)")
    demo.add_argument("--listen", default="127.0.0.1:8000", metavar="ADDR")
    return parser


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

        return run_demo(args.config, args.listen)
    return 2


if __name__ == "__main__":
    sys.exit(main())
