"""Registries and Eureka-registered services for tests, all on 127.0.0.1.

* `ThreadRegistry`: the registry server in this process, on its own event loop in a thread (fast,
  and its store is inspectable).
* `RegistryProcess`: a real `forecourt registry` process (restarts, signals, exit codes).
* `EurekaService`: a real service process: the demo service registered by the unmodified
  py-eureka-client package (tests/registry/eureka_service.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from forecourt.registry.server import RegistryOptions, RegistryServer
from forecourt.registry.store import RegistryStore
from tests.support.net import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


def instance_json(
    app: str = "ORDERS",
    instance_id: str = "orders-1",
    port: int = 8001,
    *,
    status: str = "UP",
    duration: int | None = None,
    renewal: int | None = None,
    last_dirty: int = 1000,
    **extra: Any,
) -> dict[str, Any]:
    """A registration body shaped like py-eureka-client's (Jackson-style JSON)."""
    body: dict[str, Any] = {
        "instanceId": instance_id,
        "hostName": "localhost",
        "app": app,
        "ipAddr": "127.0.0.1",
        "status": status,
        "overriddenstatus": "UNKNOWN",
        "port": {"$": port, "@enabled": "true"},
        "securePort": {"$": 443, "@enabled": "false"},
        "countryId": 1,
        "dataCenterInfo": {
            "@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo",
            "name": "MyOwn",
        },
        "metadata": {"management.port": str(port)},
        "homePageUrl": f"http://127.0.0.1:{port}/",
        "statusPageUrl": f"http://127.0.0.1:{port}/info",
        "healthCheckUrl": f"http://127.0.0.1:{port}/health",
        "vipAddress": app.lower(),
        "secureVipAddress": app.lower(),
        "isCoordinatingDiscoveryServer": "false",
        "lastUpdatedTimestamp": str(last_dirty),
        "lastDirtyTimestamp": str(last_dirty),
    }
    lease: dict[str, int] = {}
    if duration is not None:
        lease["durationInSecs"] = duration
    if renewal is not None:
        lease["renewalIntervalInSecs"] = renewal
    if lease:
        body["leaseInfo"] = lease
    body.update(extra)
    return {"instance": body}


class ThreadRegistry:
    """`RegistryServer` on a free port, served from a background thread."""

    def __init__(self, data: Path | None = None, **options: Any) -> None:
        self.options = RegistryOptions(port=free_port(), data=data, **options)
        self.store = RegistryStore(
            renewal_interval=self.options.renew_interval, lease_duration=self.options.lease_expiration
        )
        self.server = RegistryServer(self.options, self.store)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.options.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/eureka/"

    def start(self) -> ThreadRegistry:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(5)
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(5)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            self.loop.close()


def _env() -> dict[str, str]:
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), str(ROOT / "src"), env.get("PYTHONPATH")]))
    return env


class RegistryProcess:
    """`forecourt registry` as a real process; `stop()` sends SIGTERM and returns the exit code."""

    def __init__(self, *args: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.output = b""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/eureka/"

    def command(self) -> list[str]:
        listen = ["--listen", f"127.0.0.1:{self.port}"]
        return [sys.executable, "-m", "forecourt.cli", "registry", *listen, *self.args]

    def start(self) -> RegistryProcess:
        self.proc = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env()
        )
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                self.output = self.proc.communicate()[1]
                raise RuntimeError(f"registry exited at startup:\n{self.output.decode()}")
            try:
                wait_for_port(self.port, timeout=0.1)
                return self
            except TimeoutError:
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError("registry did not start") from None

    def run_to_exit(self, timeout: float = 15) -> subprocess.CompletedProcess[bytes]:
        """Run expecting the process to exit by itself (a startup error)."""
        return subprocess.run(self.command(), capture_output=True, timeout=timeout, env=_env(), check=False)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.output += self.proc.communicate(timeout=15)[1]
        except subprocess.TimeoutExpired:
            self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=5)


class EurekaService:
    """A demo service process that registers itself with py-eureka-client (eureka_service.py)."""

    def __init__(self, registry_url: str, app: str, *args: str) -> None:
        self.port = free_port()
        self.cmd = [
            sys.executable,
            "-m",
            "tests.registry.eureka_service",
            "--registry",
            registry_url,
            "--app",
            app,
            "--port",
            str(self.port),
            *args,
        ]
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self._reader: threading.Thread | None = None
        self._ready = threading.Event()

    def start(self, timeout: float = 15) -> EurekaService:
        self.proc = subprocess.Popen(
            self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(), cwd=ROOT
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(timeout):
            self.kill()
            raise RuntimeError("service did not register:\n" + "\n".join(self.lines))
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("ready"):
                self._ready.set()

    def seen(self) -> list[str]:
        """What the service's own discovery (py-eureka-client) reported, latest last."""
        return [line[5:] for line in list(self.lines) if line.startswith("seen ")]

    def terminate(self) -> int:
        """SIGTERM: the service deregisters and exits."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(15)
        self._finish()
        return code

    def kill(self) -> None:
        """SIGKILL: the service dies without deregistering."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._finish()

    def _finish(self) -> None:
        if self._reader is not None:
            self._reader.join(5)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
