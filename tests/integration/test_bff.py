"""Backends for frontends: three gateway files under one `forecourt run`, each isolated.

Each file is one BFF with its own listener. Reloading one changes only that one; a broken file on
reload leaves it serving its last good config while the other two keep serving, without a single
failed request (docs/bff.md, "Isolation guarantees").
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.net import free_port, wait_for_port
from tests.support.upstreams import DemoUpstream

BFFS = ("mobile", "web", "partner")
PARTNER_KEY = "partner-test-key"


def bff_config(name: str, port: int, upstream: int, version: str) -> dict[str, Any]:
    """A small BFF: its own listener, one route, a version header, per-client plugins."""
    plugins: list[dict[str, Any]] = [
        {"name": "response-transformer", "config": {"add": {"headers": [f"X-Bff:{name}-{version}"]}}}
    ]
    config: dict[str, Any] = {
        "_format_version": "3.0",
        "listen": [f"127.0.0.1:{port}"],
        "services": [
            {
                "name": "orders",
                "url": f"http://127.0.0.1:{upstream}/orders",
                "routes": [{"name": f"{name}-orders", "paths": ["/orders"]}],
            }
        ],
        "plugins": plugins,
    }
    if name == "partner":
        plugins.append({"name": "key-auth", "config": {"key_names": ["apikey"]}})
        plugins.append({"name": "rate-limiting", "config": {"minute": 10000, "limit_by": "consumer"}})
        config["consumers"] = [{"username": "acme", "keyauth_credentials": [{"key": PARTNER_KEY}]}]
    return config


@dataclass
class BffRun:
    """`forecourt run mobile.yaml web.yaml partner.yaml` in a temporary directory."""

    workdir: Path
    upstream: int
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def path(self, name: str) -> Path:
        return self.workdir / f"{name}.yaml"

    def write(self, name: str, version: str) -> None:
        text = yaml.safe_dump(bff_config(name, self.ports[name], self.upstream, version), sort_keys=False)
        self.path(name).write_text(text)

    def start(self) -> None:
        for name in BFFS:
            self.ports[name] = free_port()
            self.write(name, "v1")
        self.stderr_path = self.workdir / "stderr"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "forecourt.cli",
                "run",
                *(str(self.path(name)) for name in BFFS),
                "--admin-listen",
                "off",
                "--access-log",
                "off",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            env=os.environ.copy(),
        )
        for name in BFFS:
            wait_for_port(self.ports[name], timeout=15)
        for name in BFFS:
            wait_until(lambda name=name: self.version(name) == f"{name}-v1")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def get(self, name: str) -> tuple[int, str | None]:
        """GET /orders/1 on one BFF: (status, X-Bff)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.ports[name], timeout=5)
        try:
            headers = {"apikey": PARTNER_KEY} if name == "partner" else {}
            conn.request("GET", "/orders/1", headers=headers)
            response = conn.getresponse()
            response.read()
            return response.status, response.getheader("X-Bff")
        finally:
            conn.close()

    def version(self, name: str) -> str | None:
        try:
            status, version = self.get(name)
        except OSError:
            return None
        return version if status == 200 else None

    def reload(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._stderr.close()


def wait_until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.05)


@pytest.fixture
def bffs(tmp_path: Path, demo_upstream: DemoUpstream) -> Iterator[BffRun]:
    run = BffRun(tmp_path, demo_upstream.port)
    run.start()
    yield run
    run.stop()


class Traffic:
    """Requests to some BFFs from a thread, recording every answer that is not a 200."""

    def __init__(self, run: BffRun, names: tuple[str, ...]) -> None:
        self.run = run
        self.names = names
        self.failures: list[str] = []
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for name in self.names:
                try:
                    status, _ = self.run.get(name)
                except OSError as exc:
                    self.failures.append(f"{name}: {exc}")
                    continue
                self.count += 1
                if status != 200:
                    self.failures.append(f"{name}: {status}")
            time.sleep(0.005)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def test_reloading_one_bff_changes_only_that_one(bffs: BffRun) -> None:
    bffs.write("web", "v2")
    bffs.reload()
    wait_until(lambda: bffs.version("web") == "web-v2")
    assert bffs.version("mobile") == "mobile-v1"
    assert bffs.version("partner") == "partner-v1"
    # The others' text did not change, so they were not even rebuilt.
    wait_until(lambda: "reloaded web" in bffs.stderr())
    assert "reloaded mobile" not in bffs.stderr()
    assert "reloaded partner" not in bffs.stderr()


def test_a_broken_bff_keeps_its_last_good_config_and_the_others_keep_serving(bffs: BffRun) -> None:
    with Traffic(bffs, ("web", "partner")) as traffic:
        time.sleep(0.2)
        bffs.path("mobile").write_text(
            bffs.path("mobile").read_text() + "\nplugins_typo: [oops]\nroutes: {not: a list}\n"
        )
        bffs.reload()
        wait_until(lambda: "reload of" in bffs.stderr() and "mobile.yaml failed" in bffs.stderr())
        # mobile serves its last good config; the others were never touched.
        assert bffs.version("mobile") == "mobile-v1"
        # A reload of another BFF still works while mobile is broken.
        bffs.write("partner", "v2")
        bffs.reload()
        wait_until(lambda: bffs.version("partner") == "partner-v2")
        time.sleep(0.2)
    assert traffic.count > 20
    assert traffic.failures == []
    assert bffs.version("web") == "web-v1"
    assert bffs.version("mobile") == "mobile-v1"
    # The error names the file, line and key, so the owning team knows what to fix.
    assert "mobile.yaml:" in bffs.stderr()
    # Fixed, it reloads on its own again.
    bffs.write("mobile", "v2")
    bffs.reload()
    wait_until(lambda: bffs.version("mobile") == "mobile-v2")
    assert bffs.proc is not None and bffs.proc.poll() is None


def test_per_client_policies_stay_with_their_bff(bffs: BffRun) -> None:
    # partner requires its API key; mobile and web never heard of it.
    conn = http.client.HTTPConnection("127.0.0.1", bffs.ports["partner"], timeout=5)
    conn.request("GET", "/orders/1")
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.status == 401
    assert bffs.get("mobile")[0] == 200
    assert bffs.get("web")[0] == 200
