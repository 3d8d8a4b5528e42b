"""A real `forecourt run` with the admin API on a free port, and a DNS server that knows no names."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import httpx
import pytest
import yaml

from tests.support.net import free_port, wait_for_port


class NxdomainDns:
    """A UDP nameserver on 127.0.0.1 that answers NXDOMAIN at once to every query."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            query = dns.message.from_wire(data)
            reply = dns.message.make_response(query)
            reply.flags |= dns.flags.AA
            reply.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(reply.to_wire(), peer)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


class AdminNode:
    """`forecourt run FILE...` where each config gets its own `listen`, plus `--admin-listen`."""

    def __init__(self, workdir: Path, configs: dict[str, dict[str, Any]], *extra: str) -> None:
        self.workdir = workdir
        self.admin_port = free_port()
        self.ports: dict[str, int] = {}
        self.paths: dict[str, Path] = {}
        for name, config in configs.items():
            port = free_port()
            self.ports[name] = port
            path = workdir / f"{name}.yaml"
            path.write_text(yaml.safe_dump({**config, "listen": [f"127.0.0.1:{port}"]}, sort_keys=False))
            self.paths[name] = path
        self.stderr_path = workdir / "forecourt.stderr"
        cmd = [
            sys.executable,
            "-m",
            "forecourt.cli",
            "run",
            *(str(path) for path in self.paths.values()),
            "--admin-listen",
            f"127.0.0.1:{self.admin_port}",
            "--access-log",
            "off",
            *extra,
        ]
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=self._stderr, env=os.environ.copy()
        )
        try:
            wait_for_port(self.admin_port, timeout=15)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"forecourt did not start:\n{self.stderr()}") from None
        self.admin = httpx.Client(base_url=f"http://127.0.0.1:{self.admin_port}", timeout=10)

    def proxy(self, name: str) -> httpx.Client:
        return httpx.Client(base_url=f"http://127.0.0.1:{self.ports[name]}", timeout=10)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> None:
        if hasattr(self, "admin"):
            self.admin.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._stderr.close()


@pytest.fixture(scope="module")
def nxdomain_dns() -> Iterator[NxdomainDns]:
    server = NxdomainDns()
    yield server
    server.stop()
