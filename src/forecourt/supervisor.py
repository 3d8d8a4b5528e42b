"""The `forecourt run` process model: one supervisor, N forked workers that share the listeners.

The supervisor validates every FILE (and exits 1 on any error, printed as `file:line: path:
message`), binds every listener once, then forks the workers. Each worker runs `gateway.serve` on
uvloop and accepts from the inherited listening sockets; the supervisor never serves a request.

Why the supervisor binds (rather than each worker binding its own SO_REUSEPORT socket): with one
socket per worker the kernel assigns every connection to one worker's accept queue when the
handshake completes, and a worker that exits (crash, SIGKILL, or a drain that closes its socket)
takes the connections still queued there with it: they are reset. With one socket per listener,
held open by the supervisor and shared by all workers, a dying or draining worker only stops
taking from the common queue; what is queued stays there for the others (and for its
replacement). The sockets still set SO_REUSEPORT (and SO_REUSEADDR), so a second supervisor can
bind beside this one for a handover.

Signals to the supervisor:

* SIGHUP: every worker reloads every gateway (changed files are also polled once a second).
* SIGUSR1: the same; a worker sends it after `Gateway.apply_text` (the admin `POST /config`).
* SIGTERM / SIGINT: close the supervisor's copies of the listeners and forward SIGTERM; each worker
  stops accepting, drains its requests in flight (up to `--drain-timeout`) and exits; the
  supervisor exits 0 when all have (it kills stragglers `KILL_GRACE` seconds after the timeout).

A worker that exits unexpectedly is restarted: at once when it had been serving for a while,
after an exponential backoff (0.1 s doubling to 10 s) when it keeps dying young. One that dies
before the node was ever ready stops the supervisor instead (exit 1): a startup that fails once
will fail again, and a foreground command should say so rather than loop.

The loop is single-threaded and synchronous: signal handlers only wake `select` through
`signal.set_wakeup_fd`; workers report readiness through a pipe. Workers are forked with the
signals they handle blocked, so none of them can hit a worker before its handler is installed.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import NoReturn

from forecourt import NATIVE_STATUS
from forecourt.config import ConfigError
from forecourt.gateway import (
    LAST_GOOD,
    BoundSockets,
    RunOptions,
    configured_listeners,
    parse_config_text,
    plugin_env,
    read_active_config,
    serve,
    state_file,
)
from forecourt.plan.build import PlanBuilder
from forecourt.runtime import Listener

__all__ = ["KILL_GRACE", "Supervisor", "bind_listener", "supervise"]

log = logging.getLogger("forecourt.supervisor")

RESTART_BACKOFF_FIRST = 0.1
RESTART_BACKOFF_MAX = 10.0
# A worker that served at least this long before dying is restarted at once (and its backoff reset).
STABLE_UPTIME = 1.0
KILL_GRACE = 5.0
BACKLOG = 4096

_SUPERVISOR_SIGNALS = (signal.SIGHUP, signal.SIGUSR1, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)
_PR_SET_PDEATHSIG = 1


def supervise(options: RunOptions) -> int:
    """Validate, bind, fork `options.workers` workers and keep them until SIGTERM/SIGINT."""
    owned = options.state_dir is None
    state_dir = Path(tempfile.mkdtemp(prefix="forecourt-")) if owned else Path(str(options.state_dir))
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        options = replace(options, state_dir=str(state_dir))
        listeners = validate(options)
        if listeners is None:
            return 1
        try:
            sockets = {
                path: [(item, bind_listener(item)) for item in items] for path, items in listeners.items()
            }
        except OSError as exc:
            print(f"forecourt: {exc}", file=sys.stderr)
            return 1
        return Supervisor(options, sockets).run()
    finally:
        if owned:
            shutil.rmtree(state_dir, ignore_errors=True)


def validate(options: RunOptions) -> dict[str, list[Listener]] | None:
    """Check every FILE like `forecourt check` (printing every error); their listeners, or None.

    The text each FILE validated with becomes its last good config, which a worker falls back to
    if FILE is broken by the time it starts.
    """
    listeners: dict[str, list[Listener]] = {}
    taken: dict[tuple[str, int], str] = {}
    failed = False
    for path in options.files:
        try:
            source = read_active_config(path, options.state_dir)
            builder = PlanBuilder(options.dns_resolver, env=plugin_env(options))
            config = parse_config_text(source, builder.registry)
            builder.validate(config)
            items = configured_listeners(options.listen, config.listen)
            if not config.certificates and any(item.ssl for item in items):
                raise ConfigError(
                    [config.issue(("listen",), "an 'ssl' listener needs at least one certificate")]
                )
        except ConfigError as exc:
            failed = True
            for issue in exc.issues:
                print(issue, file=sys.stderr)
            continue
        except ValueError as exc:  # a malformed --listen
            print(f"forecourt: {exc}", file=sys.stderr)
            return None
        for item in items:
            other = taken.setdefault((item.host, item.port), path)
            if other != path:
                failed = True
                print(
                    f"{path}: listen: {item.host}:{item.port} is already the listener of {other}",
                    file=sys.stderr,
                )
        listeners[path] = items
        last_good = state_file(options.state_dir, path, LAST_GOOD)
        if last_good is not None:
            last_good.write_text(source.text, encoding="utf-8")
    return None if failed else listeners


def bind_listener(listener: Listener) -> list[socket.socket]:
    """Listening sockets for `listener`: one per address its host resolves to (like asyncio)."""
    host = None if listener.host in ("", "*") else listener.host
    try:
        infos = socket.getaddrinfo(host, listener.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(f"cannot listen on {listener.host}:{listener.port}: {exc.strerror}") from exc
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise OSError(
                    exc.errno, f"cannot listen on {listener.host}:{listener.port}: {exc.strerror}"
                ) from exc
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


@dataclass(slots=True, eq=False)
class WorkerSlot:
    """One of the N worker positions; its process is replaced when it dies."""

    index: int
    pid: int | None = None
    started: float = 0.0
    ready: bool = False
    failures: int = 0
    restart_at: float | None = None


class _SupervisorLink:
    """`WorkerPeers` in a forked worker: a pipe for readiness, SIGUSR1 for "everyone reload"."""

    def __init__(self, ready_fd: int, supervisor: int) -> None:
        self.ready_fd = ready_fd
        self.supervisor = supervisor

    def ready(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self.ready_fd, f"ready {os.getpid()}\n".encode())

    def reload_all(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.supervisor, signal.SIGUSR1)


class Supervisor:
    """Forks the workers, relays signals to them, restarts the ones that die, waits for drains."""

    def __init__(self, options: RunOptions, sockets: BoundSockets) -> None:
        self.options = options
        self.sockets = sockets
        self.slots = [WorkerSlot(i + 1) for i in range(options.workers)]
        self.pid = os.getpid()
        self.stopping = False
        self.announced = False
        self.kill_at: float | None = None
        self.exit_code = 0
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._ready_r, self._ready_w = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(self._ready_r, False)
        self._ready_buffer = b""

    # ------------------------------------------------------------------ main loop
    def run(self) -> int:
        previous = {sig: signal.signal(sig, _wake_only) for sig in _SUPERVISOR_SIGNALS}
        previous_fd = signal.set_wakeup_fd(self._wake_w)
        try:
            log.info("supervisor started: %d worker(s), %s", len(self.slots), NATIVE_STATUS)
            for slot in self.slots:
                self._spawn(slot)
            while self.stopping is False or self._alive():
                self._wait(self._timeout())
                self._reap()
                self._restart_due()
                self._kill_stragglers()
        finally:
            signal.set_wakeup_fd(previous_fd)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._close_listeners()
            for fd in (self._wake_r, self._wake_w, self._ready_r, self._ready_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
        log.info("supervisor stopped")
        return self.exit_code

    def _alive(self) -> list[WorkerSlot]:
        return [slot for slot in self.slots if slot.pid is not None]

    def _timeout(self) -> float:
        now = time.monotonic()
        moments = [slot.restart_at for slot in self.slots if slot.restart_at is not None]
        if self.kill_at is not None:
            moments.append(self.kill_at)
        return max(0.0, min([now + 1.0, *moments]) - now)

    def _wait(self, timeout: float) -> None:
        try:
            readable, _, _ = select.select([self._wake_r, self._ready_r], [], [], timeout)
        except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for clarity
            return
        if self._wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                for number in os.read(self._wake_r, 512):
                    self._on_signal(signal.Signals(number))
        if self._ready_r in readable:
            with contextlib.suppress(BlockingIOError):
                self._ready_buffer += os.read(self._ready_r, 4096)
            *lines, self._ready_buffer = self._ready_buffer.split(b"\n")
            for line in lines:
                word, _, pid = line.decode().partition(" ")
                if word == "ready" and pid.isdigit():
                    self._on_ready(int(pid))

    # ------------------------------------------------------------------ events
    def _on_signal(self, sig: signal.Signals) -> None:
        if sig in (signal.SIGTERM, signal.SIGINT):
            self._stop(f"{sig.name} received")
        elif sig in (signal.SIGHUP, signal.SIGUSR1) and not self.stopping:
            alive = self._alive()
            log.info("%s: reloading %d worker(s)", sig.name, len(alive))
            for slot in alive:
                self._send(slot, signal.SIGHUP)

    def _on_ready(self, pid: int) -> None:
        slot = next((s for s in self.slots if s.pid == pid), None)
        if slot is None:
            return
        slot.ready = True
        log.info("worker %d (pid %d) serving", slot.index, pid)
        if not self.announced and all(s.ready for s in self.slots):
            self.announced = True
            print("forecourt: ready", file=sys.stderr, flush=True)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot = next((s for s in self.slots if s.pid == pid), None)
            if slot is None:
                continue
            slot.pid = None
            code = os.waitstatus_to_exitcode(status)
            how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
            if self.stopping:
                log.info("worker %d (pid %d) %s", slot.index, pid, how)
                continue
            if not self.announced:
                log.error("worker %d (pid %d) %s while starting; stopping", slot.index, pid, how)
                self.exit_code = 1
                self._stop("a worker failed to start")
                continue
            now = time.monotonic()
            if slot.ready and now - slot.started >= STABLE_UPTIME:
                slot.failures = 0
            else:
                slot.failures += 1
            delay = (
                0.0
                if slot.failures == 0
                else min(RESTART_BACKOFF_MAX, RESTART_BACKOFF_FIRST * 2 ** (slot.failures - 1))
            )
            slot.restart_at = now + delay
            log.warning(
                "worker %d (pid %d) %s; restarting it%s",
                slot.index,
                pid,
                how,
                f" in {delay:.1f}s" if delay else "",
            )

    def _restart_due(self) -> None:
        if self.stopping:
            return
        now = time.monotonic()
        for slot in self.slots:
            if slot.restart_at is not None and slot.restart_at <= now:
                slot.restart_at = None
                self._spawn(slot)

    def _stop(self, reason: str) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.kill_at = time.monotonic() + self.options.drain_timeout + KILL_GRACE
        alive = self._alive()
        log.info(
            "%s: stopping %d worker(s), draining up to %gs", reason, len(alive), self.options.drain_timeout
        )
        # New connections are refused as soon as every worker has closed its copy too.
        self._close_listeners()
        for slot in self.slots:
            slot.restart_at = None
        for slot in alive:
            self._send(slot, signal.SIGTERM)

    def _kill_stragglers(self) -> None:
        if self.kill_at is None or time.monotonic() < self.kill_at:
            return
        self.kill_at = None
        for slot in self._alive():
            log.error("worker %d (pid %d) did not drain in time; killing it", slot.index, slot.pid)
            self._send(slot, signal.SIGKILL)
            self.exit_code = 1

    def _send(self, slot: WorkerSlot, sig: signal.Signals) -> None:
        if slot.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(slot.pid, sig)

    def _close_listeners(self) -> None:
        for items in self.sockets.values():
            for _, socks in items:
                for sock in socks:
                    sock.close()

    # ------------------------------------------------------------------ workers
    def _spawn(self, slot: WorkerSlot) -> None:
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SUPERVISOR_SIGNALS)
        try:
            pid = os.fork()
        except OSError as exc:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            slot.failures += 1
            slot.restart_at = time.monotonic() + RESTART_BACKOFF_MAX
            log.error("cannot start worker %d: %s", slot.index, exc)
            return
        if pid == 0:
            self._become_worker()
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        slot.pid = pid
        slot.started = time.monotonic()
        slot.ready = False
        log.info("worker %d (pid %d) started", slot.index, pid)

    def _become_worker(self) -> NoReturn:
        """The forked child: serve until told to stop, then exit without returning."""
        code = 1
        try:
            # Still blocked: HUP/TERM/INT wait for the handlers `serve` installs; USR1 and CHLD
            # are the supervisor's business.
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGUSR1, signal.SIG_IGN)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGUSR1, signal.SIGCHLD))
            for fd in (self._wake_r, self._wake_w, self._ready_r):
                os.close(fd)
            _stop_with_parent(self.pid)
            code = run_worker(self.options, self.sockets, _SupervisorLink(self._ready_w, self.pid))
        except BaseException:
            traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(code)


def run_worker(options: RunOptions, sockets: BoundSockets, peers: _SupervisorLink) -> int:
    """A worker's life: `serve` on uvloop; 0 after a drain, 1 when it could not start."""
    import uvloop

    try:
        uvloop.run(serve(options, sockets=sockets, peers=peers))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


def _stop_with_parent(parent: int) -> None:
    """Have Linux send SIGTERM when the supervisor dies, so a killed supervisor leaves no workers."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            log.debug("prctl(PR_SET_PDEATHSIG) failed: %s", errno.errorcode.get(ctypes.get_errno(), "?"))
    if os.getppid() != parent:  # the supervisor died before prctl: drain and exit now
        os.kill(os.getpid(), signal.SIGTERM)


def _wake_only(signum: int, frame: FrameType | None) -> None:
    """Signal handler of the supervisor: `set_wakeup_fd` already told the main loop."""
