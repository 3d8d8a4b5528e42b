#!/usr/bin/env python3
"""Forecourt's benchmark: wrk through Forecourt vs through nginx, same upstream, same CPU pinning.

This drives the team's shared harness (`../shared/bench/compare.py`, next to this checkout), which
runs nginx as the reference and Forecourt as the candidate in interleaved rounds and prints the
ratio on its last line. Scenarios add config templates (plugins etc.) from `bench/configs/`.

    python bench/run.py                       # one worker, one route, no plugins
    python bench/run.py --scenario all        # every scenario in bench/configs/
    python bench/run.py -- --headers minimal  # anything after -- goes to compare.py
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "bench" / "configs"


def find_compare() -> Path:
    candidates = [os.environ.get("FORECOURT_COMPARE", ""), REPO.parent / "shared" / "bench" / "compare.py"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    sys.exit("bench: cannot find compare.py; set FORECOURT_COMPARE to its path")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scenario", default="plain", help="plain (no template), a bench/configs/ name, or all"
    )
    parser.add_argument("--workers", default="1")
    parser.add_argument("--access-log", default="-", help="'-' (stdout, the default), a path, or 'off'")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for compare.py after --")
    args = parser.parse_args()
    forecourt = REPO / ".venv" / "bin" / "forecourt"
    cmd = (
        f"{shlex.quote(str(forecourt))} run {{config}} --listen 127.0.0.1:{{port}} "
        f"--workers {args.workers} --access-log {shlex.quote(args.access_log)}"
    )
    scenarios = (
        ["plain", *sorted(p.stem for p in CONFIGS.glob("*.yaml"))]
        if args.scenario == "all"
        else [args.scenario]
    )
    status = 0
    for scenario in scenarios:
        argv = [sys.executable, str(find_compare()), "--cmd", cmd]
        if scenario != "plain":
            argv += ["--config-template", str(CONFIGS / f"{scenario}.yaml")]
        argv += [a for a in args.rest if a != "--"]
        print(f"## scenario: {scenario}", flush=True)
        status |= subprocess.call(argv)
    return status


if __name__ == "__main__":
    sys.exit(main())
