"""The process model over real processes and sockets: supervisor, workers, signals, reloads, drain.

Every test runs `forecourt run` as a subprocess on free 127.0.0.1 ports; the `node` fixture kills
whatever is left (supervisor and every worker it ever saw) even when a test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
import uvloop
import yaml
from cryptography import x509

from forecourt.config import ConfigError
from forecourt.gateway import OVERRIDE, Gateway, RunOptions, state_file
from tests.support.net import free_port
from tests.support.upstreams import DemoUpstream

# ---------------------------------------------------------------------------------------------------- helpers


def write_config(path: Path, config: dict[str, Any] | str) -> None:
    """Write atomically, as an operator's deploy tool would (the gateway polls the file)."""
    text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def wait_until(condition: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(p) for p in handle.read().split()]
    except OSError:
        return []


def client_ports_of(pid: int, port: int) -> set[int]:
    """Client-side ports of the connections to `port` that process `pid` holds (via /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:["):
                inodes.add(int(link[8:-1]))
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as handle:
            for line in handle.read().splitlines()[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if int(fields[9]) in inodes and local_port == port and remote_port:
                    found.add(remote_port)
    return found


def get(port: int, path: str = "/", timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
    """One request on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        return response.status, json.loads(body) if body.startswith(b"{") else {}
    finally:
        conn.close()


def service(name: str, port: int, *routes: dict[str, Any], path: str = "") -> dict[str, Any]:
    return {"name": name, "url": f"http://127.0.0.1:{port}{path}", "routes": list(routes)}


def config(*services: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"_format_version": "3.0", **top, "services": list(services)}


class Node:
    """A `forecourt run` supervisor with its workers."""

    def __init__(self, workdir: Path, files: list[Path], *args: str) -> None:
        self.workdir = workdir
        self.files = files
        self.args = args
        self.stderr_path = workdir / "forecourt.stderr"
        self.proc: subprocess.Popen[bytes] | None = None
        self.seen: set[int] = set()

    def start(self, *, ready: bool = True) -> Node:
        cmd = [
            sys.executable,
            "-m",
            "forecourt.cli",
            "run",
            *map(str, self.files),
            "--admin-listen",
            "off",
            "--access-log",
            "off",
            *self.args,
        ]
        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr)
        if ready:
            self.wait_for_log("forecourt: ready", what="the node to be ready")
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_for_log(self, text: str, count: int = 1, timeout: float = 15.0, what: str = "") -> None:
        def found() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None and self.stderr().count(text) < count:
                raise AssertionError(f"forecourt exited ({self.proc.returncode}):\n{self.stderr()}")
            return self.stderr().count(text) >= count

        try:
            wait_until(found, timeout, what or repr(text))
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- stderr:\n{self.stderr()}") from None

    def workers(self) -> list[int]:
        pids = children(self.pid)
        self.seen.update(pids)
        return pids

    def signal(self, sig: signal.Signals) -> None:
        os.kill(self.pid, sig)

    def stop(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        self.workers()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def cleanup(self) -> None:
        if self.proc is None:
            return
        self.workers()
        if self.proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.stop(10)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for pid in self.seen:  # workers also get SIGTERM from PR_SET_PDEATHSIG; be sure anyway
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


NodeFactory = Callable[..., Node]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeFactory]:
    started: list[Node] = []

    def make(files: list[Path], *args: str, ready: bool = True) -> Node:
        made = Node(tmp_path, files, *args)
        started.append(made)
        return made.start(ready=ready)

    yield make
    for made in started:
        made.cleanup()


@pytest.fixture
def upstream() -> Iterator[DemoUpstream]:
    started = DemoUpstream("up").start()
    yield started
    started.stop()


# ---------------------------------------------------------------------------------------------------- startup


def test_a_broken_file_at_startup_is_reported_and_nothing_starts(
    tmp_path: Path, upstream: DemoUpstream
) -> None:
    good = tmp_path / "good.yaml"
    broken = tmp_path / "broken.yaml"
    listen = [f"127.0.0.1:{free_port()}"]
    write_config(good, config(service("svc", upstream.port, {"name": "r", "paths": ["/"]}), listen=listen))
    write_config(broken, "services:\n  - name: svc\n    url: 42\n")
    result = subprocess.run(
        [sys.executable, "-m", "forecourt.cli", "run", str(good), str(broken), "--admin-listen", "off"],
        capture_output=True,
        timeout=20,
        check=False,
    )
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    assert f"{broken}:3: services[0].url: " in stderr
    assert "ready" not in stderr and "started" not in stderr


# ---------------------------------------------------------------------------------------------------- workers


def test_a_killed_worker_is_replaced_and_the_port_keeps_answering(
    tmp_path: Path, upstream: DemoUpstream, node: NodeFactory
) -> None:
    port = free_port()
    path = tmp_path / "gw.yaml"
    write_config(path, config(service("svc", upstream.port, {"name": "r", "paths": ["/"]})))
    gateway = node([path], "--listen", f"127.0.0.1:{port}", "--workers", "2")
    before = gateway.workers()
    assert len(before) == 2
    os.kill(before[0], signal.SIGKILL)
    # Fresh connections right after the kill: the shared listening socket stays open in the
    # supervisor and the surviving worker, so none is refused or lost.
    statuses = [get(port)[0] for _ in range(50)]
    wait_until(lambda: len(gateway.workers()) == 2 and before[0] not in gateway.workers(), 5, "a replacement")
    gateway.wait_for_log("serving", count=3)
    statuses += [get(port)[0] for _ in range(50)]
    assert statuses == [200] * 100
    assert f"(pid {before[0]}) was killed by SIGKILL; restarting it" in gateway.stderr()
    assert gateway.stop() == 0


def test_a_worker_that_dies_at_startup_is_restarted_with_backoff(
    tmp_path: Path, upstream: DemoUpstream, node: NodeFactory
) -> None:
    port = free_port()
    path = tmp_path / "gw.yaml"
    state = tmp_path / "state"
    write_config(path, config(service("svc", upstream.port, {"name": "r", "paths": ["/"]})))
    gateway = node([path], "--listen", f"127.0.0.1:{port}", "--state-dir", str(state))
    # Break the file and remove the last good config: a new worker has nothing it can serve.
    write_config(path, "services: [")
    for item in state.glob("*.last-good"):
        item.unlink()
    killed = time.monotonic()
    os.kill(gateway.workers()[0], signal.SIGKILL)
    # Each failed start doubles the wait (the first restart may be immediate): 0.1, 0.2, 0.4, 0.8 s.
    gateway.wait_for_log("restarting it in 0.8s", timeout=10)
    assert time.monotonic() - killed >= 0.1 + 0.2 + 0.4
    assert gateway.stderr().count("restarting it") <= 5, gateway.stderr()
    write_config(path, config(service("svc", upstream.port, {"name": "r", "paths": ["/"]})))
    wait_until(lambda: get(port)[0] == 200, 5, "the fixed worker")
    assert gateway.stop() == 0


# ---------------------------------------------------------------------------------------------------- reloads


@dataclass
class Traffic:
    """Shared state of the client threads of the zero-failed-requests test."""

    total: int
    issued: int = 0
    done: int = 0
    failures: list[str] = field(default_factory=list)
    # (client port of the connection that failed, error): requests that were retried once.
    retries: list[tuple[int, str]] = field(default_factory=list)
    generations: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> int | None:
        with self.lock:
            if self.issued >= self.total:
                return None
            self.issued += 1
            return self.issued


def keep_alive_client(port: int, traffic: Traffic) -> None:
    """Requests one after another on one keep-alive connection, reconnecting when it breaks.

    The one retry allowed is the one every HTTP client makes (RFC 9110 §9.2.2, for idempotent
    requests): the request went out on a *reused* connection and the connection broke before any
    response byte arrived. A SIGKILLed worker's connections break that way; the test checks that
    every retried connection was one the killed worker held. Anything else is a failure.
    """
    conn: http.client.HTTPConnection | None = None
    reused = False
    while (n := traffic.take()) is not None:
        for attempt in (1, 2):
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                reused = False
            client_port = conn.sock.getsockname()[1] if conn.sock is not None else 0
            try:
                conn.request("GET", f"/item/{n}")
                response = conn.getresponse()
            except (ConnectionResetError, BrokenPipeError) as exc:  # incl. RemoteDisconnected
                conn.close()
                conn = None
                if reused and attempt == 1:
                    with traffic.lock:
                        traffic.retries.append((client_port, repr(exc)))
                    continue
                with traffic.lock:
                    traffic.failures.append(f"request {n}: {exc!r}")
                break
            except OSError as exc:
                conn.close()
                conn = None
                with traffic.lock:
                    traffic.failures.append(f"request {n}: {exc!r}")
                break
            try:
                body = response.read()
            except OSError as exc:
                conn.close()
                conn = None
                with traffic.lock:
                    traffic.failures.append(f"request {n}: body: {exc!r}")
                break
            reused = True
            if response.will_close:
                conn.close()
                conn = None
            with traffic.lock:
                if response.status != 200:
                    traffic.failures.append(f"request {n}: {response.status} {body[:200]!r}")
                else:
                    traffic.done += 1
                    traffic.generations.add(int(json.loads(body)["path"].split("/")[1][1:]))
            break
    if conn is not None:
        conn.close()


def generation(upstream_port: int, k: int) -> dict[str, Any]:
    """Config generation `k`: the service path names it (the echo shows which plan served a
    request) and the extra route alternates between a path change and a header-match change."""
    extra: dict[str, Any] = (
        {"name": "extra", "paths": [f"/extra-{k}"]}
        if k % 2
        else {"name": "extra", "paths": ["/extra"], "headers": {"x-variant": [str(k)]}}
    )
    return config(service("svc", upstream_port, {"name": "main", "paths": ["/"]}, extra, path=f"/g{k}"))


def test_zero_failed_requests_while_reloading_ten_times_and_killing_a_worker(
    tmp_path: Path, upstream: DemoUpstream, node: NodeFactory
) -> None:
    port = free_port()
    path = tmp_path / "gw.yaml"
    write_config(path, generation(upstream.port, 0))
    gateway = node([path], "--listen", f"127.0.0.1:{port}", "--workers", "2")
    traffic = Traffic(total=3000)
    clients = [
        threading.Thread(target=keep_alive_client, args=(port, traffic), daemon=True) for _ in range(6)
    ]
    for client in clients:
        client.start()
    victim = 0
    victim_ports: set[int] = set()
    try:
        for k in range(1, 11):
            threshold = k * traffic.total // 12
            wait_until(lambda: traffic.done >= threshold, 30, f"traffic before reload {k}")  # noqa: B023
            if k == 5:
                victim = gateway.workers()[0]
                victim_ports = client_ports_of(victim, port)
                os.kill(victim, signal.SIGKILL)
            write_config(path, generation(upstream.port, k))
            gateway.signal(signal.SIGHUP)
            wait_until(lambda: k in traffic.generations, 10, f"generation {k} to answer")  # noqa: B023
    finally:
        for client in clients:
            client.join(60)
    assert traffic.failures == []
    assert traffic.done == traffic.total
    assert all(client_port in victim_ports for client_port, _ in traffic.retries), (
        victim_ports,
        traffic.retries,
    )
    assert len(traffic.retries) <= len(victim_ports)
    # The killed worker was replaced, and every worker serves the last generation.
    wait_until(lambda: len(gateway.workers()) == 2 and victim not in gateway.workers(), 5, "a replacement")
    wait_until(
        lambda: all(get(port, "/last")[1]["path"] == "/g10/last" for _ in range(20)), 5, "generation 10"
    )
    assert gateway.stop() == 0
    retried = len(traffic.retries)
    print(f"\n{traffic.done} requests, 0 failed; {retried} retried on the killed worker's connections")


def test_a_broken_file_keeps_the_old_config_serving_also_in_a_restarted_worker(
    tmp_path: Path, upstream: DemoUpstream, node: NodeFactory
) -> None:
    port_a, port_b = free_port(), free_port()
    file_a, file_b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    write_config(
        file_a,
        config(service("svc", upstream.port, {"name": "r", "paths": ["/a"]}), listen=[f"127.0.0.1:{port_a}"]),
    )
    write_config(
        file_b,
        config(service("svc", upstream.port, {"name": "r", "paths": ["/b"]}), listen=[f"127.0.0.1:{port_b}"]),
    )
    gateway = node([file_a, file_b], "--workers", "2")
    assert get(port_a, "/a")[0] == 200
    assert get(port_b, "/b")[0] == 200
    write_config(file_a, "services:\n  - name: svc\n    url: 42\n")
    write_config(
        file_b,
        config(
            service("svc", upstream.port, {"name": "r", "paths": ["/b", "/b2"]}),
            listen=[f"127.0.0.1:{port_b}"],
        ),
    )
    gateway.signal(signal.SIGHUP)
    gateway.wait_for_log("reload of", count=2, what="both workers to reject a.yaml")
    assert f"{file_a}:3: services[0].url:" in gateway.stderr()
    # a.yaml keeps its old plan; b.yaml, an isolated gateway, reloads.
    wait_until(lambda: all(get(port_b, "/b2")[0] == 200 for _ in range(10)), 5, "b.yaml's new route")
    assert [get(port_a, "/a")[0] for _ in range(10)] == [200] * 10
    # A replacement worker starts from a.yaml's last good config rather than failing on the file.
    victim = gateway.workers()[0]
    os.kill(victim, signal.SIGKILL)
    gateway.wait_for_log("serving its last good config")
    gateway.wait_for_log("serving", count=3)
    assert [get(port_a, "/a")[0] for _ in range(20)] == [200] * 20
    assert gateway.stop() == 0


def test_a_keep_alive_connection_stays_open_across_a_reload(
    tmp_path: Path, upstream: DemoUpstream, node: NodeFactory
) -> None:
    port = free_port()
    path = tmp_path / "gw.yaml"
    write_config(path, config(service("svc", upstream.port, {"name": "a", "paths": ["/a"]})))
    gateway = node([path], "--listen", f"127.0.0.1:{port}")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/a")
        assert conn.getresponse().read()
        sock = conn.sock
        assert sock is not None
        write_config(
            path,
            config(
                service("svc", upstream.port, {"name": "a", "paths": ["/a"]}, {"name": "b", "paths": ["/b"]})
            ),
        )
        gateway.signal(signal.SIGHUP)
        wait_until(lambda: get(port, "/b")[0] == 200, 5, "the reload")
        conn.request("GET", "/a")
        response = conn.getresponse()
        assert response.status == 200
        response.read()
        assert conn.sock is sock  # the same connection served it: not closed by the reload
    finally:
        conn.close()
    assert gateway.stop() == 0


def test_balancer_state_survives_a_reload_for_an_unchanged_upstream(
    tmp_path: Path, node: NodeFactory
) -> None:
    targets = [DemoUpstream(f"t{i}").start() for i in range(3)]
    probe = DemoUpstream("probe").start()
    try:
        port = free_port()
        path = tmp_path / "gw.yaml"
        pool = {"name": "pool", "targets": [{"target": f"127.0.0.1:{t.port}"} for t in targets]}
        balanced = {"name": "svc", "host": "pool", "port": 80, "routes": [{"name": "r", "paths": ["/api"]}]}
        write_config(path, config(balanced, upstreams=[pool]))
        gateway = node([path], "--listen", f"127.0.0.1:{port}")
        first = [get(port, "/api")[1]["service"] for _ in range(2)]
        assert first == ["t0", "t1"]  # smooth round-robin with equal weights starts at the first target
        extra = service("probe", probe.port, {"name": "probe", "paths": ["/probe"]})
        write_config(path, config(balanced, extra, upstreams=[pool]))
        gateway.signal(signal.SIGHUP)
        wait_until(lambda: get(port, "/probe")[0] == 200, 5, "the reload")
        # (The probe's path does not reach the pool before the reload either: 404, no pick.)
        after = [get(port, "/api")[1]["service"] for _ in range(4)]
        assert after == ["t2", "t0", "t1", "t2"]  # continues the cycle instead of restarting it
        assert gateway.stop() == 0
    finally:
        for upstream in [*targets, probe]:
            upstream.stop()


def test_an_override_applies_to_every_worker_until_the_file_changes(
    tmp_path: Path, upstream: DemoUpstream, node: NodeFactory
) -> None:
    port = free_port()
    path = tmp_path / "gw.yaml"
    state = tmp_path / "state"
    write_config(path, config(service("svc", upstream.port, {"name": "r", "paths": ["/file"]})))
    gateway = node([path], "--listen", f"127.0.0.1:{port}", "--workers", "2", "--state-dir", str(state))
    override = state_file(str(state), str(path), OVERRIDE)
    assert override is not None
    # What `Gateway.apply_text` does in one worker (write the override, SIGUSR1 the supervisor).
    write_config(override, config(service("svc", upstream.port, {"name": "r", "paths": ["/override"]})))
    gateway.signal(signal.SIGUSR1)
    wait_until(lambda: all(get(port, "/override")[0] == 200 for _ in range(10)), 5, "the override")
    assert gateway.stderr().count("SIGUSR1: reloading 2 worker(s)") == 1
    # An edit of FILE after the override wins again.
    write_config(path, config(service("svc", upstream.port, {"name": "r", "paths": ["/edited"]})))
    gateway.signal(signal.SIGHUP)
    wait_until(lambda: all(get(port, "/edited")[0] == 200 for _ in range(10)), 5, "the edited file")
    assert gateway.stop() == 0


def test_apply_text_validates_writes_the_override_swaps_and_tells_the_peers(
    tmp_path: Path, upstream: DemoUpstream
) -> None:
    path = tmp_path / "gw.yaml"
    state = tmp_path / "state"
    original = yaml.safe_dump(config(service("svc", upstream.port, {"name": "r", "paths": ["/"]})))
    path.write_text(original)

    class Peers:
        reloads = 0

        def ready(self) -> None:
            pass

        def reload_all(self) -> None:
            self.reloads += 1

    peers = Peers()
    options = RunOptions(files=[str(path)], listen=["127.0.0.1:0"], access_log="off", state_dir=str(state))
    gateway = Gateway(str(path), options, peers=peers)
    override = state_file(str(state), str(path), OVERRIDE)
    assert override is not None

    async def scenario() -> None:
        await gateway.start(asyncio.get_running_loop())
        assert gateway.runtime is not None
        assert gateway.config_hash == hashlib.sha256(original.encode()).hexdigest()
        plan = gateway.runtime.plan
        with pytest.raises(ConfigError) as broken:
            await gateway.apply_text('{"services": [{"name": "svc", "url": 42}]}')
        assert "services[0].url" in str(broken.value)
        assert gateway.runtime.plan is plan and not override.exists() and peers.reloads == 0
        text = json.dumps(
            config(service("svc", upstream.port, {"name": "new", "paths": ["/new"]})), indent="\t"
        )
        await gateway.apply_text(text)
        assert override.read_text() == text
        assert gateway.config_hash == hashlib.sha256(text.encode()).hexdigest()
        assert list(gateway.runtime.plan.routes) == ["new"]
        assert peers.reloads == 1
        assert await gateway.reload() and list(gateway.runtime.plan.routes) == ["new"]  # the override
        edited = yaml.safe_dump(config(service("svc", upstream.port, {"name": "edited", "paths": ["/e"]})))
        path.write_text(edited)
        assert gateway.changed()
        assert await gateway.reload() and list(gateway.runtime.plan.routes) == ["edited"]  # FILE is newer
        assert gateway.config_text == edited
        gateway.runtime.stop_accepting()
        gateway.runtime.close()
        await gateway.builder.close()

    uvloop.run(scenario())


def certificate_names(port: int, server_name: str | None, ca: trustme.CA) -> list[str]:
    """The DNS names of the certificate a TLS handshake with `server_name` gets."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.check_hostname = False
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    names = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    return list(names.value.get_values_for_type(x509.DNSName))


def test_a_reload_changes_the_certificates_of_new_handshakes(
    tmp_path: Path, upstream: DemoUpstream, node: NodeFactory
) -> None:
    ca = trustme.CA()
    port = free_port()
    path = tmp_path / "gw.yaml"

    def with_certificate(*names: str) -> dict[str, Any]:
        issued = ca.issue_cert(*names)
        certificate = {
            "cert": issued.cert_chain_pems[0].bytes().decode(),
            "key": issued.private_key_pem.bytes().decode(),
            "snis": [names[0]],
        }
        return config(
            service("svc", upstream.port, {"name": "r", "paths": ["/"]}),
            listen=[f"127.0.0.1:{port} ssl"],
            certificates=[certificate],
        )

    write_config(path, with_certificate("a.example.test", "old.example.test"))
    gateway = node([path])
    assert certificate_names(port, "a.example.test", ca) == ["a.example.test", "old.example.test"]
    write_config(path, with_certificate("a.example.test", "new.example.test"))
    gateway.signal(signal.SIGHUP)
    new = ["a.example.test", "new.example.test"]
    wait_until(lambda: certificate_names(port, "a.example.test", ca) == new, 5, "the new certificate")
    assert certificate_names(port, None, ca) == new  # the default certificate too
    assert gateway.stop() == 0


# ---------------------------------------------------------------------------------------------------- drain


def test_sigterm_lets_a_slow_request_finish_then_exits_0(
    tmp_path: Path, upstream: DemoUpstream, node: NodeFactory
) -> None:
    port = free_port()
    path = tmp_path / "gw.yaml"
    write_config(path, config(service("svc", upstream.port, {"name": "r", "paths": ["/"]})))
    gateway = node([path], "--listen", f"127.0.0.1:{port}", "--workers", "2")
    result: dict[str, Any] = {}

    def slow() -> None:
        try:
            result["status"] = get(port, "/delay/1000")[0]
        except OSError as exc:
            result["error"] = repr(exc)

    client = threading.Thread(target=slow)
    client.start()
    time.sleep(0.3)  # in flight at the upstream
    signalled = time.monotonic()
    gateway.signal(signal.SIGTERM)

    def refused() -> bool:
        try:
            get(port, timeout=0.5)
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
        return False

    wait_until(refused, 2, "new connections to be refused")
    client.join(5)
    assert result == {"status": 200}
    assert gateway.stop() == 0
    assert time.monotonic() - signalled >= 0.6
    # (The worker may count a probe of `refused` too: one accepted before it stopped accepting.)
    assert re.search(r"draining [1-9]\d* request\(s\) in flight", gateway.stderr()), gateway.stderr()
