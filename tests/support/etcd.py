"""A real single-member etcd on free ports of 127.0.0.1, with a throw-away data directory.

Keys are written through etcd's own JSON gateway (``/v3/kv/put``, base64 keys and values), the API
the etcd discovery provider reads. The server can be killed (SIGKILL) and started again on the same
ports and data, so tests can check what the gateway does while etcd is down.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.net import free_port

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class EtcdServer:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.data_dir = workdir / "etcd-data"
        self.client_port = free_port()
        self.peer_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "etcd.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    def start(self, timeout: float = 15.0) -> EtcdServer:
        peer = f"http://127.0.0.1:{self.peer_port}"
        args = [
            ETCD,
            "--name=test",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=test={peer}",
            "--log-level=warn",
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited at startup:\n{self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=0.5).json().get("health") == "true":
                    return self
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"etcd did not become healthy:\n{self.log_path.read_text()[-2000:]}")

    def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = httpx.post(self.url + path, json=body, timeout=5)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def put(self, key: str, value: dict[str, Any] | str) -> int:
        """Write ``key``; a dict is stored as JSON. Returns the new revision."""
        text = value if isinstance(value, str) else json.dumps(value)
        data = self._call("/v3/kv/put", {"key": _b64(key), "value": _b64(text)})
        return int(data["header"]["revision"])

    def delete(self, key: str) -> int:
        data = self._call("/v3/kv/deleterange", {"key": _b64(key)})
        return int(data["header"]["revision"])

    def compact(self, revision: int) -> None:
        self._call("/v3/kv/compaction", {"revision": str(revision), "physical": True})

    def kill(self) -> None:
        """Crash it: SIGKILL, connections reset."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@contextmanager
def run_etcd(workdir: Path) -> Iterator[EtcdServer]:
    """A started etcd, stopped afterwards; fails the test if etcd is not installed."""
    if not os.access(ETCD, os.X_OK):
        pytest.fail("etcd is not installed: `make test` installs it (scripts/install-system-deps.sh)")
    server = EtcdServer(workdir).start()
    try:
        yield server
    finally:
        server.stop()
