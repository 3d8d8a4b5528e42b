"""A real `forecourt run` process for integration tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from tests.support.net import free_port, wait_for_port


class GatewayProcess:
    """Writes `config` to a file, runs `forecourt run` on a free port, stops it on `stop()`."""

    def __init__(
        self, config: dict[str, Any] | str, workdir: Path, *extra_args: str, tls: bool = False
    ) -> None:
        self.workdir = workdir
        self.tls = tls
        self.port = free_port()
        self.config_path = workdir / "gateway.yaml"
        self.write_config(config)
        self.access_log = workdir / "access.log"
        self.stderr_path = workdir / "gateway.stderr"
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None

    def write_config(self, config: dict[str, Any] | str) -> None:
        text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
        self.config_path.write_text(text)

    def start(self) -> GatewayProcess:
        cmd = [
            sys.executable,
            "-m",
            "forecourt.cli",
            "run",
            str(self.config_path),
            "--listen",
            f"127.0.0.1:{self.port}" + (" ssl" if self.tls else ""),
            "--access-log",
            str(self.access_log),
            *self.extra_args,
        ]
        if "--admin-listen" not in self.extra_args:
            cmd += ["--admin-listen", "off"]  # never share 127.0.0.1:8001 between test gateways
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=self._stderr, env=os.environ.copy()
        )
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"gateway exited at startup:\n{self.stderr()}")
            try:
                wait_for_port(self.port, timeout=0.2)
                return self
            except TimeoutError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"gateway did not start:\n{self.stderr()}") from None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def log_records(self, wait: float = 0.4) -> list[dict[str, Any]]:
        """Access-log lines written so far (waits for the batched flush)."""
        time.sleep(wait)
        if not self.access_log.exists():
            return []
        return [json.loads(line) for line in self.access_log.read_text().splitlines() if line.strip()]

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._stderr.close()
        return self.proc.returncode
