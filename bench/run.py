#!/usr/bin/env python3
"""Forecourt's benchmark: wrk through Forecourt vs through nginx, same upstream, same CPU pinning.

This drives the team's shared harness (`../shared/bench/compare.py`, next to this checkout), which
runs nginx as the reference and Forecourt as the candidate in interleaved rounds and prints the
ratio on its last line. A scenario is a config template in `bench/configs/` (plugins on the route);
it is measured against nginx *and* against the same gateway without plugins (`plain.yaml`, as
compare.py's `--vs-cmd`), so the last line's `vs_ratio` is "with plugins / without plugins".
Templates may use `{redis_port}`: a redis-server is then started on cpu1 (beside the upstream).

    python bench/run.py                           # one worker, one route, no plugins
    python bench/run.py --scenario offload-local  # jwt + rate-limiting (local) + correlation-id
    python bench/run.py --scenario all            # every scenario in bench/configs/
    python bench/run.py -- --headers minimal      # anything after -- goes to compare.py
    python bench/run.py --access-log off          # like for like: the harness's nginx logs nothing

Forecourt's access log is on by default here (as in production); `--access-log off` compares the
proxies doing the same job. `bench/inprocess.py` measures the Python cost of one request alone.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "bench" / "configs"
FORECOURT = REPO / ".venv" / "bin" / "forecourt"


def find_compare() -> Path:
    candidates = [os.environ.get("FORECOURT_COMPARE", ""), REPO.parent / "shared" / "bench" / "compare.py"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    sys.exit("bench: cannot find compare.py; set FORECOURT_COMPARE to its path")


def run_command(config: str, workers: str, access_log: str) -> str:
    return (
        f"{shlex.quote(str(FORECOURT))} run {config} --listen 127.0.0.1:{{port}} "
        f"--workers {workers} --access-log {shlex.quote(access_log)} --admin-listen off"
    )


@contextlib.contextmanager
def redis_server() -> Iterator[int]:
    """A throwaway redis-server on cpu1 (the harness's load CPU), for the redis policy scenario."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    proc = subprocess.Popen(
        [
            "taskset",
            "-c",
            "1",
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.1):
                break
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(5)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", default="plain", help="plain, a bench/configs/ name, or all")
    parser.add_argument("--workers", default="1")
    parser.add_argument("--access-log", default="-", help="'-' (stdout, the default), a path, or 'off'")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for compare.py after --")
    args = parser.parse_args()
    scenarios = [args.scenario]
    if args.scenario == "all":
        scenarios = ["plain", *sorted(p.stem for p in CONFIGS.glob("*.yaml") if p.stem != "plain")]
    extra = [a for a in args.rest if a != "--"]
    # Say which build runs: an edit since `make native` means pure Python and figures ~2x slower.
    mode = subprocess.run(
        [str(FORECOURT.parent / "python"), "-c", "import forecourt; print(forecourt.NATIVE_STATUS)"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    print(f"## forecourt: {mode or 'cannot import forecourt'}", flush=True)
    if not mode.startswith("compiled"):
        print("## warning: not the compiled build; `make native` first for figures to quote", flush=True)
    status = 0
    workdir = Path(tempfile.mkdtemp(prefix="forecourt-bench-"))
    for scenario in scenarios:
        print(f"## scenario: {scenario}", flush=True)
        argv = [sys.executable, str(find_compare())]
        if scenario == "plain":
            argv += ["--cmd", run_command("{config}", args.workers, args.access_log), *extra]
            status |= subprocess.call(argv)
            continue
        template = (CONFIGS / f"{scenario}.yaml").read_text()
        plain = workdir / "plain.tmpl"
        plain.write_text((CONFIGS / "plain.yaml").read_text().replace("{upstream_port}", "@UPSTREAM_PORT@"))
        plain_cmd = (
            f"sed s/@UPSTREAM_PORT@/{{upstream_port}}/ {plain} > {workdir}/plain-{{port}}.yaml && exec "
            + run_command(f"{workdir}/plain-{{port}}.yaml", args.workers, args.access_log)
        )
        with contextlib.ExitStack() as stack:
            if "{redis_port}" in template:
                template = template.replace("{redis_port}", str(stack.enter_context(redis_server())))
            rendered = workdir / f"{scenario}.yaml"
            rendered.write_text(template)
            argv += [
                "--config-template",
                str(rendered),
                "--cmd",
                run_command("{config}", args.workers, args.access_log),
                "--vs-cmd",
                plain_cmd,
                *extra,
            ]
            status |= subprocess.call(argv)
    return status


if __name__ == "__main__":
    sys.exit(main())
