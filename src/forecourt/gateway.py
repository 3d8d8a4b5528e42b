"""Running gateways in this process: load each file, build its plan, serve, reload, drain.

One config file is one gateway (one BFF): its own listeners, plan, pool and access log, so a broken
or reloaded file never touches another. The multi-process supervisor (workers, SO_REUSEPORT) runs
this same code in each worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import logging
import os
import signal
import socket
import ssl
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel

from forecourt.admin import start_admin
from forecourt.config import ConfigError, ConfigIssue, GatewayConfig, Listen, load_config, parse_config
from forecourt.http.limits import ServerLimits
from forecourt.observability import AccessLog
from forecourt.observability.metrics import configure as configure_metrics
from forecourt.pipeline import PluginEnv
from forecourt.plan import Plan
from forecourt.plan.build import PlanBuilder
from forecourt.runtime import GatewayRuntime, Listener

log = logging.getLogger("forecourt")

DEFAULT_LISTEN = "0.0.0.0:8000"
DRAIN_SECONDS = 30.0


@dataclass(slots=True)
class RunOptions:
    """What `forecourt run` was asked to do."""

    files: list[str]
    listen: list[str] | None = None
    admin_listen: str = "127.0.0.1:8001"
    workers: int = 1
    access_log: str = "-"
    dns_resolver: str | None = None
    redis: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    limits: ServerLimits = field(default_factory=ServerLimits)
    drain_timeout: float = DRAIN_SECONDS
    # The run's private state directory (override files, last good configs), shared by its workers;
    # the supervisor creates a temporary one when none is given.
    state_dir: str | None = None
    # Proxies (CIDRs) whose X-Forwarded-For plugins believe when finding the client IP.
    trusted_ips: tuple[str, ...] = ()

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunOptions:
        workers = _usable_cpus() if args.workers == "auto" else int(args.workers)
        given = {
            name: getattr(args, flag)
            for flag, name in _LIMIT_FLAGS.items()
            if getattr(args, flag, None) is not None
        }
        return cls(
            files=list(args.files),
            listen=args.listen,
            admin_listen=args.admin_listen,
            workers=max(1, workers),
            access_log=args.access_log,
            dns_resolver=args.dns_resolver,
            redis=args.redis,
            limits=replace(ServerLimits(), **given),
            drain_timeout=getattr(args, "drain_timeout", DRAIN_SECONDS),
            state_dir=getattr(args, "state_dir", None),
            trusted_ips=tuple(getattr(args, "trusted_ips", None) or ()),
        )


def _usable_cpus() -> int:
    """CPUs this process may run on (a container's CPU set), for `--workers auto`."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # pragma: no cover - not Linux


# `forecourt run` flag (argparse dest) → ServerLimits field.
_LIMIT_FLAGS = {
    "header_timeout": "header_timeout",
    "body_timeout": "body_timeout",
    "keepalive_timeout": "keepalive_timeout",
    "max_body_size": "max_body_bytes",
    "max_request_line": "max_request_line",
    "max_header_size": "max_header_bytes",
    "max_headers": "max_header_count",
}


def check_files(files: Sequence[str]) -> int:
    """`forecourt check`: print every error as `file:line: key.path: message`; 0 when all are valid."""
    failed = False
    for path in files:
        try:
            builder = PlanBuilder()
            config = load_config(path, builder.registry)
            builder.validate(config)
        except ConfigError as exc:
            failed = True
            for issue in exc.issues:
                print(issue, file=sys.stderr)
        except OSError as exc:
            failed = True
            print(f"{path}: cannot read: {exc.strerror}", file=sys.stderr)
        else:
            print(f"{path}: ok")
    return 1 if failed else 0


def parse_listen(value: str) -> Listener:
    """`host:port [ssl]` → Listener (the same syntax as the config's `listen`)."""
    words = value.split()
    if not words or any(w != "ssl" for w in words[1:]):
        raise ValueError(
            f"invalid listen address {value!r}: expected 'host:port' optionally followed by 'ssl'"
        )
    host, sep, port = words[0].rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"invalid listen address {value!r}: expected 'host:port'")
    host = host.strip("[]") or "0.0.0.0"
    return Listener(host, int(port), ssl="ssl" in words[1:])


class WorkerPeers(Protocol):
    """The rest of the node, as one worker sees it: the supervisor that forked it."""

    def ready(self) -> None:
        """This worker serves every gateway now."""

    def reload_all(self) -> None:
        """Ask every worker to reload (this one has just applied a new config)."""


@dataclass(frozen=True, slots=True)
class ConfigText:
    """A gateway's config as read: where it came from and its text."""

    origin: str
    text: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def state_file(state_dir: str | None, path: str, kind: str) -> Path | None:
    """`<state_dir>/<stem>-<hash of FILE's absolute path>.<kind>`: one per FILE and kind."""
    if state_dir is None:
        return None
    key = hashlib.sha256(os.path.abspath(path).encode("utf-8")).hexdigest()[:12]
    return Path(state_dir) / f"{Path(path).stem}-{key}.{kind}"


def read_active_config(path: str, state_dir: str | None) -> ConfigText:
    """FILE's text, or its override (the admin API's `POST /config`) when that is newer than FILE.

    An operator who edits FILE after a `POST /config` therefore wins, and the override wins over
    a FILE that did not change since. Raises `ConfigError` when the chosen file cannot be read.
    """
    override = state_file(state_dir, path, OVERRIDE)
    origin = path
    if override is not None and _mtime_ns(override) > _mtime_ns(path):
        origin = str(override)
    return ConfigText(origin, _read_text(origin))


def parse_config_text(source: ConfigText, plugin_schemas: Mapping[str, type[BaseModel]]) -> GatewayConfig:
    """`parse_config` for a text that may be JSON whatever its file is called (an override)."""
    text = source.text
    if text.lstrip().startswith("{") and not source.origin.lower().endswith(".json"):
        # What the loader does for `*.json`: tabs between JSON tokens are not valid YAML.
        text = text.replace("\t", " ")
    return parse_config(text, source.origin, plugin_schemas)


def configured_listeners(listen: Sequence[str] | None, config_listen: Sequence[Listen]) -> list[Listener]:
    """The proxy listeners of one gateway: `--listen`, else the file's `listen`, else the default."""
    if listen:
        return [parse_listen(v) for v in listen]
    if config_listen:
        return [Listener(item.host, item.port, item.ssl) for item in config_listen]
    return [parse_listen(DEFAULT_LISTEN)]


# Kinds of per-FILE files in the state directory.
OVERRIDE = "override"  # the text of the last `POST /config` (apply_text)
LAST_GOOD = "last-good"  # the last config a worker loaded; a worker started later falls back to it


def plugin_env(options: RunOptions) -> PluginEnv:
    """What plugins get from the command line: Redis, the run's state directory, trusted proxies."""
    return PluginEnv(
        redis_url=options.redis,
        state_dir=Path(options.state_dir) if options.state_dir is not None else None,
        trusted_ips=options.trusted_ips,
    )


class Gateway:
    """One config file served in this process.

    The active config is FILE's text, or the run's override of it (written by `apply_text`) when
    that is newer. Every config this gateway activates is also saved as its last good config, so a
    worker started later (a crashed one's replacement) still serves when FILE has been broken since.
    """

    def __init__(
        self,
        path: str,
        options: RunOptions,
        builder: PlanBuilder | None = None,
        peers: WorkerPeers | None = None,
    ) -> None:
        self.path = path
        self.name = Path(path).stem
        self.options = options
        # One builder per gateway: target sets (balancer state) are kept per FILE, and retiring the
        # ones a reload no longer uses cannot touch another gateway's.
        self.builder = (
            builder if builder is not None else PlanBuilder(options.dns_resolver, env=plugin_env(options))
        )
        self.peers = peers
        self.runtime: GatewayRuntime | None = None
        self.active: ConfigText | None = None
        self.listening: list[Listener] = []
        self._stamp: tuple[object, ...] = ()
        self._swap = asyncio.Lock()

    # ------------------------------------------------------------------ the active config
    @property
    def config_hash(self) -> str:
        """sha256 (hex) of the active config text; empty before the gateway started."""
        return self.active.digest if self.active is not None else ""

    @property
    def config_text(self) -> str | None:
        """The active config text (FILE's, an override's or the last good one)."""
        return self.active.text if self.active is not None else None

    def read_source(self) -> ConfigText:
        return read_active_config(self.path, self.options.state_dir)

    def compile(self, source: ConfigText) -> Plan:
        """Config text → plan, beside the one serving; raises `ConfigError` with every problem."""
        plan = self.builder.build(parse_config_text(source, self.builder.registry))
        listeners = self.listening or self.listeners(plan)
        if plan.server_ssl is None and any(item.ssl for item in listeners):
            raise ConfigError([plan.config.issue((), "an 'ssl' listener needs at least one certificate")])
        return plan

    def load(self) -> Plan:
        return self.compile(self.read_source())

    def listeners(self, plan: Plan) -> list[Listener]:
        return configured_listeners(self.options.listen, plan.listen)

    # ------------------------------------------------------------------ lifecycle
    async def start(
        self,
        loop: asyncio.AbstractEventLoop,
        bound: Sequence[tuple[Listener, Sequence[socket.socket]]] | None = None,
    ) -> None:
        """Load, prepare and listen; `bound` are listening sockets inherited from the supervisor."""
        if bound is not None:
            self.listening = [listener for listener, _ in bound]
        self._stamp = self._sources_stamp()
        source = self.read_source()
        try:
            plan = self.compile(source)
        except ConfigError as exc:
            fallback = self._last_good()
            if fallback is None:
                raise
            log.error("%s is broken; serving its last good config until it is fixed:\n%s", self.path, exc)
            source = fallback
            plan = self.compile(source)
        await self.builder.prepare(plan)
        self.runtime = GatewayRuntime(
            plan,
            loop=loop,
            limits=self.options.limits,
            access_log=AccessLog.open(self.options.access_log, self.name),
            name=self.name,
        )
        if not self.listening:
            self.listening = self.listeners(plan)
        if plan.server_ssl is not None:
            self._follow_certificates(plan.server_ssl)
        sockets = [list(socks) for _, socks in bound] if bound is not None else None
        await self.runtime.start(self.listening, plan.server_ssl, sockets)
        self._activate(source)
        for listener in self.listening:
            log.info(
                "gateway %s listening on %s://%s:%d", self.name, listener.scheme, listener.host, listener.port
            )

    async def reload(self) -> bool:
        """Build a new plan beside the old one and swap it in; keep the old one on any error.

        Returns False when the config is broken. An unchanged text (same hash) is not rebuilt, so a
        changed file followed by SIGHUP reloads once.
        """
        assert self.runtime is not None
        async with self._swap:
            self._stamp = self._sources_stamp()
            try:
                source = self.read_source()
                if self.active is not None and source.digest == self.active.digest:
                    return True
                plan = self.compile(source)
            except ConfigError as exc:
                log.error("reload of %s failed; still serving the previous config:\n%s", self.path, exc)
                return False
            except Exception:
                log.exception("reload of %s failed; still serving the previous config", self.path)
                return False
            await self._install(plan, source)
        log.info("reloaded %s from %s (config %s)", self.name, source.origin, source.digest[:12])
        return True

    async def apply_text(self, text: str) -> None:
        """Make `text` this gateway's config in every worker (the admin API's `POST /config`).

        Raises `ConfigError` and changes nothing when `text` is invalid (`OSError` when the
        override cannot be written). Otherwise the text is written atomically to the run's override
        of FILE, swapped in here, and every other worker is asked to reload (they read the override,
        which is newer than FILE). Listeners are not rebound: a changed `listen` needs a restart.
        """
        assert self.runtime is not None
        async with self._swap:
            source = ConfigText(f"{self.name} (POST /config)", text)
            plan = self.compile(source)
            override = state_file(self.options.state_dir, self.path, OVERRIDE)
            if override is not None:
                _write_atomically(override, text)
                source = ConfigText(str(override), text)
            await self._install(plan, source)
            self._stamp = self._sources_stamp()
        log.info("applied a new config to %s (config %s)", self.name, source.digest[:12])
        if self.peers is not None:
            self.peers.reload_all()

    def changed(self) -> bool:
        """FILE or its override changed since the last (re)load."""
        return self._sources_stamp() != self._stamp

    # ------------------------------------------------------------------ internals
    async def _install(self, plan: Plan, source: ConfigText) -> None:
        assert self.runtime is not None
        await self.builder.prepare(plan)
        old = self.runtime.plan
        self.runtime.plan = plan
        self.builder.retire(old, plan)
        wanted = self.listeners(plan)
        if [(x.host, x.port, x.ssl) for x in wanted] != [(x.host, x.port, x.ssl) for x in self.listening]:
            log.warning(
                "%s: `listen` changed; restart forecourt to listen on %s (still on %s)",
                self.path,
                ", ".join(_listener_text(x) for x in wanted),
                ", ".join(_listener_text(x) for x in self.listening),
            )
        self._activate(source)

    def _activate(self, source: ConfigText) -> None:
        self.active = source
        last_good = state_file(self.options.state_dir, self.path, LAST_GOOD)
        if last_good is not None:
            try:
                _write_atomically(last_good, source.text)
            except OSError as exc:
                log.warning("cannot save the last good config of %s: %s", self.path, exc)

    def _last_good(self) -> ConfigText | None:
        last_good = state_file(self.options.state_dir, self.path, LAST_GOOD)
        if last_good is None or not last_good.exists():
            return None
        try:
            return ConfigText(str(last_good), _read_text(str(last_good)))
        except ConfigError:
            return None

    def _sources_stamp(self) -> tuple[object, ...]:
        override = state_file(self.options.state_dir, self.path, OVERRIDE)
        return (_stat_key(self.path), _stat_key(override) if override is not None else None)

    def _follow_certificates(self, listening: ssl.SSLContext) -> None:
        """Let each TLS handshake pick its certificate from the current plan, so reloads apply.

        The listening context is the first plan's; its SNI callback is replaced by one that asks
        the plan serving now (its own table for the first plan), which switches the connection to
        that plan's certificate context.
        """
        first = listening.sni_callback

        def select(conn: ssl.SSLObject, server_name: str, context: ssl.SSLContext) -> int | None:
            current = self.runtime.plan.server_ssl if self.runtime is not None else None
            callback = first if current is None or current is listening else current.sni_callback
            return callback(conn, server_name, context) if callback is not None else None

        listening.sni_callback = select


def _listener_text(listener: Listener) -> str:
    return f"{listener.host}:{listener.port}" + (" ssl" if listener.ssl else "")


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise ConfigError([ConfigIssue(path, None, "", f"cannot read file: {exc.strerror}")]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigIssue(path, None, "", "cannot read file: not UTF-8 text")]) from exc


def _write_atomically(path: Path, text: str) -> None:
    """Readers see the old text or the new one, never a mix (write beside, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _mtime_ns(path: str | Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


def _stat_key(path: str | Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


# Signals a worker handles on its event loop. The supervisor forks with them blocked, so one that
# arrives while the worker starts is held until its handler is installed (never the default action).
WORKER_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)

BoundSockets = Mapping[str, Sequence[tuple[Listener, Sequence[socket.socket]]]]


async def serve(
    options: RunOptions,
    ready: asyncio.Event | None = None,
    *,
    sockets: BoundSockets | None = None,
    peers: WorkerPeers | None = None,
) -> None:
    """Serve every file until SIGTERM/SIGINT; SIGHUP or a changed file reloads.

    Standalone (the demo, tests) it binds its own listeners and prints `forecourt: ready`. In a
    worker forked by the supervisor it accepts on the inherited `sockets` (by FILE) and tells
    `peers` when it is ready instead. On SIGTERM/SIGINT it stops accepting, lets the requests in
    flight finish (up to `options.drain_timeout`), then returns.
    """
    loop = asyncio.get_running_loop()
    # Metrics of this worker, published to the run's state directory for the others' scrapes.
    metrics = configure_metrics(Path(options.state_dir) / "metrics" if options.state_dir else None, loop)
    gateways = [Gateway(path, options, peers=peers) for path in options.files]
    for gateway in gateways:
        await gateway.start(loop, sockets.get(gateway.path) if sockets is not None else None)
    state_dir = Path(options.state_dir) if options.state_dir is not None else None
    admin = (
        None
        if options.admin_listen == "off"
        else await start_admin(gateways, options.admin_listen, state_dir)
    )
    # Everything built so far (imports, config models, plans) lives as long as the worker: keep it
    # out of the cyclic collector's full passes, which otherwise walk it again and again under load.
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    reload_requested = asyncio.Event()
    wake = asyncio.Event()

    def request_stop() -> None:
        stop.set()
        wake.set()

    def request_reload() -> None:
        reload_requested.set()
        wake.set()

    loop.add_signal_handler(signal.SIGTERM, request_stop)
    loop.add_signal_handler(signal.SIGINT, request_stop)
    loop.add_signal_handler(signal.SIGHUP, request_reload)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, WORKER_SIGNALS)
    if ready is not None:
        ready.set()
    if peers is not None:
        peers.ready()
    else:
        print("forecourt: ready", file=sys.stderr, flush=True)
    while not stop.is_set():
        # Files are polled once a second; a signal wakes the loop at once.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), 1.0)
        wake.clear()
        if stop.is_set():
            break
        forced = reload_requested.is_set()
        reload_requested.clear()
        for gateway in gateways:
            if forced or gateway.changed():
                await gateway.reload()
    if admin is not None:
        admin.close()
    for gateway in gateways:
        if gateway.runtime is not None:
            gateway.runtime.stop_accepting()
    runtimes = [g.runtime for g in gateways if g.runtime is not None]
    busy = sum(1 for r in runtimes for c in r.clients if c.exchange is not None or c.queue)
    log.info("stopping: draining %d request(s) in flight (up to %gs)", busy, options.drain_timeout)
    await asyncio.gather(*(r.drain(options.drain_timeout) for r in runtimes))
    for runtime in runtimes:
        runtime.close()
    await asyncio.gather(*(g.builder.close() for g in gateways))
    metrics.close()


def run(options: RunOptions) -> int:
    """`forecourt run`: the supervisor and its workers (supervisor.py), also with one worker."""
    from forecourt.supervisor import supervise

    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if options.listen and len(options.files) > 1:
        print(
            "forecourt: --listen applies to a single FILE; give each file its own `listen`", file=sys.stderr
        )
        return 2
    return supervise(options)
