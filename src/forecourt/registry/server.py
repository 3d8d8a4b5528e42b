"""`forecourt registry`: Eureka's REST API over the registry store.

Routes, under `/eureka/` (Spring Cloud's path) and `/eureka/v2/` (Netflix's):

    POST   apps/{app}                     register (JSON or XML body)          204
    PUT    apps/{app}/{id}                heartbeat                             200, 404 → register again
    DELETE apps/{app}/{id}                deregister                            200, 404
    GET    apps | apps/delta              the registry | what changed lately    200
    GET    apps/{app} | apps/{app}/{id}   one application | one instance        200, 404
    GET    instances/{id}                 one instance by id alone              200, 404
    GET    vips/{vip} | svips/{svip}      instances by (secure) VIP address     200, 404
    PUT    apps/{app}/{id}/status?value=  status override (OUT_OF_SERVICE, UP…) 200, 404
    DELETE apps/{app}/{id}/status         remove the override (?value= fallback) 200, 404
    PUT    apps/{app}/{id}/metadata?k=v   add or change metadata               200, 404

Answers are XML unless `Accept` asks for JSON first (Eureka's Jersey resources behave the same, and
clients that send no `Accept` parse XML). Unlike Eureka there is no 30-second response cache: a
change is visible to the next fetch. Every change is persisted before it is acknowledged (see
store.py). The HTTP layer is the admin API's small httptools server (admin/server.py), bound
without SO_REUSEPORT so a second registry on the same port fails instead of silently sharing it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from forecourt.admin.server import AdminConnection, AdminRequest, AdminResponse, AdminServer
from forecourt.registry.codec import (
    CodecError,
    Format,
    body_format,
    decode_instance,
    encode_application,
    encode_applications,
    encode_instance,
    media_type,
    response_format,
)
from forecourt.registry.health import HealthChecker
from forecourt.registry.model import InstanceInfo, Status
from forecourt.registry.store import Persister, RegistryDataError, RegistryStore, load_store

__all__ = [
    "RegistryAPI",
    "RegistryOptions",
    "RegistryServer",
    "RegistryStartError",
    "run_registry",
    "serve_registry",
]

log = logging.getLogger("forecourt.registry")

_PREFIXES = (("eureka", "v2"), ("eureka",))


@dataclass(slots=True)
class RegistryOptions:
    host: str = "127.0.0.1"
    port: int = 8761
    data: Path | None = None
    renew_interval: int = 30
    lease_expiration: int = 90
    eviction_interval: float = 5.0
    health_check_interval: float = 0.0
    health_check_timeout: float = 2.0

    def problems(self) -> list[str]:
        """What makes these options unusable (empty when they are fine)."""
        found = []
        for name in ("renew_interval", "lease_expiration", "eviction_interval", "health_check_timeout"):
            if getattr(self, name) <= 0:
                found.append(f"--{name.replace('_', '-')} must be positive")
        if self.health_check_interval < 0:
            found.append("--health-check-interval must be 0 (off) or positive")
        return found

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RegistryOptions:
        host, port = args.listen
        return cls(
            host=host,
            port=port,
            data=Path(args.data) if args.data else None,
            renew_interval=args.renew_interval,
            lease_expiration=args.lease_expiration,
            eviction_interval=args.eviction_interval,
            health_check_interval=args.health_check_interval,
            health_check_timeout=args.health_check_timeout,
        )


class RegistryStartError(Exception):
    """The registry cannot start serving (its address is taken, say)."""


def _message(status: int, message: str) -> AdminResponse:
    return AdminResponse.message(status, message)


def _empty(status: int, fmt: Format) -> AdminResponse:
    return AdminResponse(status, b"", content_type=media_type(fmt))


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value is not None and value.strip().isdigit() else None


class RegistryAPI:
    """The REST API (an `AdminApp`): request in, response out, store changes committed."""

    def __init__(self, store: RegistryStore, commit: Callable[[], Awaitable[None]]) -> None:
        self.store = store
        self.commit = commit

    async def handle(self, request: AdminRequest) -> AdminResponse:
        segments = request.segments
        for prefix in _PREFIXES:
            if tuple(segments[: len(prefix)]) == prefix:
                rest = segments[len(prefix) :]
                break
        else:
            if request.path in ("/", "/health") and request.method in ("GET", "HEAD"):
                return AdminResponse.json(200, {"status": "UP", "instances": len(self.store)})
            return _message(404, "Not found: the Eureka API is under /eureka/")
        fmt = response_format(request.headers.get("accept"))
        method = "GET" if request.method == "HEAD" else request.method
        try:
            return await self._route(request, method, rest, fmt)
        except OSError as exc:
            # Only persistence raises OSError here: the change is made but not durable.
            return _message(500, f"The change could not be persisted: {exc}")

    async def _route(self, request: AdminRequest, method: str, rest: list[str], fmt: Format) -> AdminResponse:
        match rest:
            case ["apps"]:
                return self._only(method, "GET") or self._applications(fmt)
            case ["apps", "delta"]:
                return self._only(method, "GET") or self._delta(fmt)
            case ["apps", app]:
                if method == "POST":
                    return await self._register(request, app, fmt)
                return self._only(method, "GET", "POST") or self._application(app, fmt)
            case ["apps", app, instance_id]:
                if method == "PUT":
                    return self._heartbeat(request, app, instance_id, fmt)
                if method == "DELETE":
                    return await self._cancel(app, instance_id, fmt)
                return self._only(method, "GET", "PUT", "DELETE") or self._instance(app, instance_id, fmt)
            case ["apps", app, instance_id, "status"]:
                if method == "PUT":
                    return await self._set_override(request, app, instance_id, fmt)
                return self._only(method, "PUT", "DELETE") or await self._delete_override(
                    request, app, instance_id, fmt
                )
            case ["apps", app, instance_id, "metadata"]:
                return self._only(method, "PUT") or await self._metadata(request, app, instance_id, fmt)
            case ["instances", instance_id]:
                return self._only(method, "GET") or self._instance_by_id(instance_id, fmt)
            case ["vips", vip]:
                return self._only(method, "GET") or self._vip(vip, fmt, secure=False)
            case ["svips", vip]:
                return self._only(method, "GET") or self._vip(vip, fmt, secure=True)
        return _message(404, f"Not found: {request.path}")

    @staticmethod
    def _only(method: str, *allowed: str) -> AdminResponse | None:
        if method in allowed:
            return None
        response = _message(405, f"Method {method} not allowed")
        response.headers.append(
            ("Allow", ", ".join(sorted({*allowed, "HEAD"} if "GET" in allowed else allowed)))
        )
        return response

    def _answer(self, body: bytes, fmt: Format) -> AdminResponse:
        return AdminResponse(200, body, content_type=media_type(fmt))

    # ------------------------------------------------------------------------------ reads
    def _applications(self, fmt: Format) -> AdminResponse:
        body = encode_applications(self.store.applications(), self.store.version, self.store.hashcode(), fmt)
        return self._answer(body, fmt)

    def _delta(self, fmt: Format) -> AdminResponse:
        body = encode_applications(self.store.delta(), self.store.version, self.store.hashcode(), fmt)
        return self._answer(body, fmt)

    def _application(self, app: str, fmt: Format) -> AdminResponse:
        regs = self.store.application(app)
        if not regs:
            return _message(404, f"Application {app.upper()} is not registered")
        return self._answer(encode_application(app.upper(), regs, fmt), fmt)

    def _instance(self, app: str, instance_id: str, fmt: Format) -> AdminResponse:
        reg = self.store.get(app, instance_id)
        if reg is None:
            return _message(404, f"Instance {instance_id} of {app.upper()} is not registered")
        return self._answer(encode_instance(reg, fmt), fmt)

    def _instance_by_id(self, instance_id: str, fmt: Format) -> AdminResponse:
        reg = self.store.find(instance_id)
        if reg is None:
            return _message(404, f"Instance {instance_id} is not registered")
        return self._answer(encode_instance(reg, fmt), fmt)

    def _vip(self, vip: str, fmt: Format, *, secure: bool) -> AdminResponse:
        groups = self.store.by_vip(vip, secure=secure)
        if not groups:
            return _message(404, f"No instance has the {'secure ' if secure else ''}VIP address {vip}")
        return self._answer(encode_applications(groups, self.store.version, self.store.hashcode(), fmt), fmt)

    # ------------------------------------------------------------------------------ changes
    async def _register(self, request: AdminRequest, app: str, fmt: Format) -> AdminResponse:
        try:
            info = decode_instance(
                request.body, body_format(request.headers.get("content-type"), request.body)
            )
        except CodecError as exc:
            return _message(400, f"Invalid instance: {exc}")
        expected = app.upper()
        if not info.app:
            info = dataclasses.replace(info, app=expected)
        elif info.app != expected:
            return _message(400, f"Mismatched appName, expecting {expected} but was {info.app}")
        if not info.instance_id:
            return _message(400, "Missing instanceId (and no hostName to use instead)")
        if not info.host_name and not info.ip_addr:
            return _message(400, "Missing hostName and ipAddr: the instance has no address")
        new = self.store.get(info.app, info.instance_id) is None
        reg = self.store.register(info)
        await self.commit()
        if new:
            address = f"{info.ip_addr or info.host_name}:{info.secure_port if _secure(info) else info.port}"
            log.info("registered %s/%s at %s (%s)", info.app, info.instance_id, address, reg.effective_status)
        return _empty(204, fmt)

    def _heartbeat(self, request: AdminRequest, app: str, instance_id: str, fmt: Format) -> AdminResponse:
        last_dirty = _int_or_none(request.query.get("lastDirtyTimestamp"))
        if not self.store.renew(app, instance_id, last_dirty):
            return _message(404, f"Instance {instance_id} of {app.upper()} is not registered")
        return _empty(200, fmt)

    async def _cancel(self, app: str, instance_id: str, fmt: Format) -> AdminResponse:
        if self.store.cancel(app, instance_id) is None:
            return _message(404, f"Instance {instance_id} of {app.upper()} is not registered")
        await self.commit()
        log.info("deregistered %s/%s", app.upper(), instance_id)
        return _empty(200, fmt)

    async def _set_override(
        self, request: AdminRequest, app: str, instance_id: str, fmt: Format
    ) -> AdminResponse:
        value = request.query.get("value")
        if not value:
            return _message(400, "Missing ?value= (UP, DOWN, STARTING, OUT_OF_SERVICE or UNKNOWN)")
        try:
            status = Status.parse(value)
        except ValueError as exc:
            return _message(400, str(exc))
        last_dirty = _int_or_none(request.query.get("lastDirtyTimestamp"))
        if not self.store.set_override(app, instance_id, status, last_dirty):
            return _message(404, f"Instance {instance_id} of {app.upper()} is not registered")
        await self.commit()
        log.info("status of %s/%s overridden: %s", app.upper(), instance_id, status)
        return _empty(200, fmt)

    async def _delete_override(
        self, request: AdminRequest, app: str, instance_id: str, fmt: Format
    ) -> AdminResponse:
        value = request.query.get("value")
        try:
            fallback = Status.parse(value) if value else None
        except ValueError as exc:
            return _message(400, str(exc))
        if not self.store.delete_override(app, instance_id, fallback):
            return _message(404, f"Instance {instance_id} of {app.upper()} is not registered")
        await self.commit()
        log.info("status override of %s/%s removed", app.upper(), instance_id)
        return _empty(200, fmt)

    async def _metadata(
        self, request: AdminRequest, app: str, instance_id: str, fmt: Format
    ) -> AdminResponse:
        items = request.query
        if not items:
            return _message(400, "No metadata given: PUT .../metadata?key=value")
        if not self.store.update_metadata(app, instance_id, items):
            return _message(404, f"Instance {instance_id} of {app.upper()} is not registered")
        await self.commit()
        return _empty(200, fmt)


def _secure(info: InstanceInfo) -> bool:
    return info.secure_port_enabled and not info.port_enabled


class _Listener(AdminServer):
    """The admin API's HTTP server, bound exclusively (see the module docstring)."""

    async def listen(self, host: str, port: int) -> None:
        server = await self.loop.create_server(lambda: AdminConnection(self), host, port, backlog=512)
        self.servers.append(server)


class RegistryServer:
    """The listener, the eviction loop, the optional health checker and the persister."""

    def __init__(self, options: RegistryOptions, store: RegistryStore) -> None:
        self.options = options
        self.store = store
        self.persister = Persister(options.data, store.to_document) if options.data is not None else None
        self.api = RegistryAPI(store, self.commit)
        self._listener: _Listener | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def commit(self) -> None:
        if self.persister is not None:
            await self.persister.commit()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._listener = _Listener(self.api, loop)
        try:
            await self._listener.listen(self.options.host, self.options.port)
        except OSError as exc:
            raise RegistryStartError(
                f"cannot listen on {self.options.host}:{self.options.port}: {exc}"
            ) from exc
        self._tasks.append(loop.create_task(self._evict_forever()))
        if self.options.health_check_interval > 0:
            checker = HealthChecker(
                self.store,
                interval=self.options.health_check_interval,
                timeout=self.options.health_check_timeout,
                on_change=self._commit_quietly,
            )
            self._tasks.append(loop.create_task(checker.run()))

    @property
    def port(self) -> int:
        assert self._listener is not None
        return self._listener.port

    async def _commit_quietly(self) -> None:
        with contextlib.suppress(OSError):  # logged by the persister; the next change retries
            await self.commit()

    async def _evict_forever(self) -> None:
        while True:
            await asyncio.sleep(self.options.eviction_interval)
            evicted = self.store.evict_expired()
            for reg in evicted:
                log.warning(
                    "evicted %s/%s: no heartbeat for %d s", reg.info.app, reg.info.instance_id, reg.duration
                )
            if evicted:
                await self._commit_quietly()

    async def close(self) -> None:
        """Stop listening and background work, then write the final state."""
        if self._listener is not None:
            self._listener.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.persister is not None:
            await self.persister.close()


async def serve_registry(options: RegistryOptions, store: RegistryStore) -> None:
    """Serve until SIGTERM or SIGINT, then persist and return."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = RegistryServer(options, store)
    try:
        await server.start()
    except RegistryStartError:
        await server.close()
        raise
    where = f"data {options.data}" if options.data is not None else "in memory only: no --data"
    log.info(
        "registry listening on http://%s:%d/eureka/ (%d instances; %s)",
        options.host,
        server.port,
        len(store),
        where,
    )
    try:
        await stop.wait()
    finally:
        await server.close()
        log.info("registry stopped (%d instances saved)", len(store) if options.data else 0)


def run_registry(options: RegistryOptions) -> int:
    """`forecourt registry`: 0 after SIGTERM/SIGINT, 1 when it cannot start."""
    import uvloop

    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for problem in options.problems():
        print(f"forecourt registry: {problem}", file=sys.stderr)
    if options.problems():
        return 2
    try:
        store = (
            load_store(
                options.data,
                renewal_interval=options.renew_interval,
                lease_duration=options.lease_expiration,
            )
            if options.data is not None
            else RegistryStore(
                renewal_interval=options.renew_interval, lease_duration=options.lease_expiration
            )
        )
    except RegistryDataError as exc:
        print(f"forecourt registry: {exc}", file=sys.stderr)
        return 1
    try:
        uvloop.run(serve_registry(options, store))
    except RegistryStartError as exc:
        print(f"forecourt registry: {exc}", file=sys.stderr)
        return 1
    return 0
