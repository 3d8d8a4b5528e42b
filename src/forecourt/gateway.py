"""Running gateways in this process: load each file, build its plan, serve, reload, drain.

One config file is one gateway (one BFF): its own listeners, plan, pool and access log, so a broken
or reloaded file never touches another. The multi-process supervisor (workers, SO_REUSEPORT) runs
this same code in each worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from forecourt.config import ConfigError, GatewayConfig, load_config
from forecourt.http.limits import ServerLimits
from forecourt.observability import AccessLog
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

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunOptions:
        workers = os.cpu_count() or 1 if args.workers == "auto" else int(args.workers)
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
        )


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


class Gateway:
    """One config file served in this process."""

    def __init__(self, path: str, options: RunOptions, builder: PlanBuilder) -> None:
        self.path = path
        self.options = options
        self.builder = builder
        self.runtime: GatewayRuntime | None = None
        self.mtime = 0.0

    def load(self) -> Plan:
        config: GatewayConfig = load_config(self.path, self.builder.registry)
        return self.builder.build(config)

    async def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.mtime = _mtime(self.path)
        plan = self.load()
        await self.builder.prepare(plan)
        name = Path(self.path).stem
        self.runtime = GatewayRuntime(
            plan,
            loop=loop,
            limits=self.options.limits,
            access_log=AccessLog.open(self.options.access_log, name),
            name=name,
        )
        listeners = self.listeners(plan)
        if plan.server_ssl is None and any(item.ssl for item in listeners):
            raise ConfigError([plan.config.issue((), "an 'ssl' listener needs at least one certificate")])
        await self.runtime.start(listeners, plan.server_ssl)
        for listener in self.listeners(plan):
            log.info(
                "gateway %s listening on %s://%s:%d", name, listener.scheme, listener.host, listener.port
            )

    def listeners(self, plan: Plan) -> list[Listener]:
        if self.options.listen:
            return [parse_listen(v) for v in self.options.listen]
        if plan.listen:
            return [Listener(item.host, item.port, item.ssl) for item in plan.listen]
        return [parse_listen(DEFAULT_LISTEN)]

    async def reload(self) -> bool:
        """Build a new plan beside the old one and swap it in; keep the old one on any error."""
        assert self.runtime is not None
        self.mtime = _mtime(self.path)
        try:
            plan = self.load()
            await self.builder.prepare(plan)
        except ConfigError as exc:
            log.error("reload of %s failed; still serving the previous config:\n%s", self.path, exc)
            return False
        except OSError as exc:
            log.error("reload of %s failed (%s); still serving the previous config", self.path, exc)
            return False
        old = self.runtime.plan
        self.runtime.plan = plan
        self.builder.retire(old, plan)
        log.info("reloaded %s", self.path)
        return True

    async def apply_text(self, text: str) -> None:
        """Validate `text` as this gateway's config and swap it in (admin `POST /config`).

        Raises `ConfigError` (with every issue) and changes nothing when `text` is invalid.
        Minimal version added by the admin API: it swaps the plan in this worker only; it neither
        writes the file nor tells other workers, and `listen` changes need a restart.
        """
        from forecourt.config import parse_config

        assert self.runtime is not None
        plan = self.builder.build(parse_config(text, self.path, self.builder.registry))
        await self.builder.prepare(plan)
        old = self.runtime.plan
        self.runtime.plan = plan
        self.builder.retire(old, plan)
        log.info("applied a new config to %s through the admin API", self.path)

    def changed(self) -> bool:
        return _mtime(self.path) != self.mtime


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


async def serve(options: RunOptions, ready: asyncio.Event | None = None) -> None:
    """Serve every file until SIGTERM/SIGINT; SIGHUP or a changed file reloads."""
    loop = asyncio.get_running_loop()
    builder = PlanBuilder(dns_resolver=options.dns_resolver)
    gateways = [Gateway(path, options, builder) for path in options.files]
    for gateway in gateways:
        await gateway.start(loop)
    stop = asyncio.Event()
    reload_requested = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload_requested.set)
    if ready is not None:
        ready.set()
    print("forecourt: ready", file=sys.stderr, flush=True)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await reload_requested.wait()
        forced = reload_requested.is_set()
        reload_requested.clear()
        for gateway in gateways:
            if forced or gateway.changed():
                await gateway.reload()
    for gateway in gateways:
        if gateway.runtime is not None:
            gateway.runtime.stop_accepting()
    await asyncio.gather(*(g.runtime.drain(DRAIN_SECONDS) for g in gateways if g.runtime is not None))
    for gateway in gateways:
        if gateway.runtime is not None:
            gateway.runtime.close()
    await builder.close()


def run(options: RunOptions) -> int:
    """`forecourt run`."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if options.listen and len(options.files) > 1:
        print(
            "forecourt: --listen applies to a single FILE; give each file its own `listen`", file=sys.stderr
        )
        return 2
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a declared dependency
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(serve(options))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"forecourt: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0
