"""The registry's state: registrations by application, leases, status overrides, the delta queue,
and persistence to one data file.

Everything here runs on the event loop's thread and never blocks, except `write_atomic`, which the
`Persister` runs on a worker thread.

Lease rule: an instance that has not renewed for its lease duration (the `durationInSecs` it
registered with, else the registry's default) is evicted by `evict_expired`. Unlike Eureka, which
by a long-standing quirk waits twice the duration, expiry happens after exactly one duration.

Persistence: every change that clients can observe (register, cancel, status override, metadata,
eviction, health verdicts) bumps `version`; the server awaits `Persister.commit()` before answering,
and the persister writes the whole registry once for all changes made since its last write (a group
commit: a burst of 500 registrations costs a handful of writes, not 500). A write goes to a
temporary file in the same directory, is fsynced, renamed over the data file and the directory is
fsynced, so the file is always either the old or the new registry, never half of one. Renewals
(heartbeats) are not written: after a restart every loaded instance starts a fresh lease, so
instances get a full lease duration to find the registry again, which is what a restart that
"loses nothing" needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from forecourt.registry.codec import CodecError, info_from_json, info_to_json
from forecourt.registry.model import ActionType, InstanceInfo, Registration, Status

__all__ = [
    "DATA_FORMAT",
    "DELTA_RETENTION",
    "Persister",
    "RegistryDataError",
    "RegistryStore",
    "load_store",
    "write_atomic",
]

log = logging.getLogger("forecourt.registry")

DATA_FORMAT = "forecourt-registry/1"
DELTA_RETENTION = 180.0
"""Seconds a change stays in `GET apps/delta` (Eureka's `retentionTimeInMSInDeltaQueue`)."""

AppGroups = list[tuple[str, list[Registration]]]


def _now_ms() -> int:
    return int(time.time() * 1000)


class RegistryDataError(Exception):
    """The data file cannot be used; the message names the file and what is wrong with it."""


class RegistryStore:
    """Registrations keyed by upper-case app name, then instance id."""

    def __init__(
        self,
        *,
        renewal_interval: int = 30,
        lease_duration: int = 90,
        delta_retention: float = DELTA_RETENTION,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = _now_ms,
    ) -> None:
        self.renewal_interval = renewal_interval
        self.lease_duration = lease_duration
        self.delta_retention = delta_retention
        self.version = 1
        self._clock = clock
        self._wall_ms = wall_ms
        self._apps: dict[str, dict[str, Registration]] = {}
        self._recent: deque[tuple[float, Registration]] = deque()
        self._hash: tuple[int, str] = (0, "")

    # ------------------------------------------------------------------------------ changes
    def register(self, info: InstanceInfo) -> Registration:
        """Add or replace an instance (a re-registration keeps its override and service-up time).

        As in Eureka, when the registry already holds a newer version of the instance (a larger
        `lastDirtyTimestamp`) than the one being registered, the newer one is kept; the lease is
        renewed either way.
        """
        now_ms = self._wall_ms()
        instances = self._apps.setdefault(info.app, {})
        existing = instances.get(info.instance_id)
        if existing is not None and existing.info.last_dirty_timestamp > info.last_dirty_timestamp:
            info = existing.info
        override = Status.UNKNOWN
        if existing is not None:
            override = existing.override
        elif info.overridden_status is not Status.UNKNOWN:
            override = info.overridden_status
        reg = Registration(
            info=info,
            renewal_interval=info.renewal_interval if info.renewal_interval > 0 else self.renewal_interval,
            duration=info.duration if info.duration > 0 else self.lease_duration,
            registered_ms=now_ms,
            last_renewal_ms=now_ms,
            service_up_ms=existing.service_up_ms if existing is not None else 0,
            last_updated_ms=now_ms,
            renewed_at=self._clock(),
            override=override,
            health_down=existing.health_down if existing is not None else False,
        )
        instances[info.instance_id] = reg
        self._changed(reg, ActionType.ADDED)
        return reg

    def renew(self, app: str, instance_id: str, last_dirty: int | None = None) -> bool:
        """A heartbeat. False (answered 404, so the client registers again) when the instance is
        unknown, or when the client's `lastDirtyTimestamp` is newer than what the registry holds:
        the client has changed since it registered and the registry should hear about it."""
        reg = self.get(app, instance_id)
        if reg is None:
            return False
        if last_dirty is not None and last_dirty > reg.info.last_dirty_timestamp:
            return False
        reg.renewed_at = self._clock()
        reg.last_renewal_ms = self._wall_ms()
        return True

    def cancel(self, app: str, instance_id: str) -> Registration | None:
        """Remove an instance (deregistration); its status override goes with it."""
        instances = self._apps.get(app.upper())
        reg = instances.pop(instance_id, None) if instances is not None else None
        if reg is None:
            return None
        if instances is not None and not instances:
            del self._apps[app.upper()]
        self._changed(reg, ActionType.DELETED)
        return reg

    def set_override(self, app: str, instance_id: str, status: Status, last_dirty: int | None = None) -> bool:
        reg = self.get(app, instance_id)
        if reg is None:
            return False
        if last_dirty is not None and last_dirty > reg.info.last_dirty_timestamp:
            reg.info = dataclasses.replace(reg.info, last_dirty_timestamp=last_dirty)
        reg.override = status
        self._changed(reg, ActionType.MODIFIED)
        return True

    def delete_override(self, app: str, instance_id: str, fallback: Status | None = None) -> bool:
        """Remove an override; `fallback` (the optional `?value=`) becomes the instance's status."""
        reg = self.get(app, instance_id)
        if reg is None:
            return False
        reg.override = Status.UNKNOWN
        if fallback is not None and fallback is not Status.UNKNOWN:
            reg.info = dataclasses.replace(reg.info, status=fallback)
        self._changed(reg, ActionType.MODIFIED)
        return True

    def update_metadata(self, app: str, instance_id: str, items: dict[str, str]) -> bool:
        reg = self.get(app, instance_id)
        if reg is None:
            return False
        reg.info = dataclasses.replace(reg.info, metadata={**reg.info.metadata, **items})
        self._changed(reg, ActionType.MODIFIED)
        return True

    def set_health(self, app: str, instance_id: str, *, down: bool) -> bool:
        """The health checker's verdict; True when it changed what clients see."""
        reg = self.get(app, instance_id)
        if reg is None or reg.health_down == down:
            return False
        before = reg.effective_status
        reg.health_down = down
        if reg.effective_status is before:
            return False
        self._changed(reg, ActionType.MODIFIED)
        return True

    def evict_expired(self) -> list[Registration]:
        """Remove every instance whose lease ran out; returns them."""
        now = self._clock()
        expired = [
            reg
            for instances in self._apps.values()
            for reg in instances.values()
            if now - reg.renewed_at > reg.duration
        ]
        for reg in expired:
            reg.evicted_ms = self._wall_ms()
            self.cancel(*reg.key)
        return expired

    def _changed(self, reg: Registration, action: ActionType) -> None:
        reg.action_type = action
        reg.last_updated_ms = self._wall_ms()
        if reg.service_up_ms == 0 and action is not ActionType.DELETED and reg.effective_status is Status.UP:
            reg.service_up_ms = reg.last_updated_ms
        self.version += 1
        now = self._clock()
        self._recent.append((now, reg.snapshot()))
        self._prune(now)

    def _prune(self, now: float) -> None:
        while self._recent and now - self._recent[0][0] > self.delta_retention:
            self._recent.popleft()

    # ------------------------------------------------------------------------------ queries
    def get(self, app: str, instance_id: str) -> Registration | None:
        instances = self._apps.get(app.upper())
        return instances.get(instance_id) if instances is not None else None

    def find(self, instance_id: str) -> Registration | None:
        """An instance by id alone (`GET instances/{id}`)."""
        for instances in self._apps.values():
            if instance_id in instances:
                return instances[instance_id]
        return None

    def application(self, app: str) -> list[Registration]:
        instances = self._apps.get(app.upper(), {})
        return [instances[key] for key in sorted(instances)]

    def applications(self) -> AppGroups:
        return [(name, self.application(name)) for name in sorted(self._apps)]

    def registrations(self) -> list[Registration]:
        return [reg for _, regs in self.applications() for reg in regs]

    def by_vip(self, vip: str, *, secure: bool = False) -> AppGroups:
        """Instances whose (comma-separated) `vipAddress` (or `secureVipAddress`) names `vip`."""
        wanted = vip.strip().lower()
        groups: AppGroups = []
        for name, regs in self.applications():
            found = [
                reg
                for reg in regs
                if wanted
                in {
                    part.strip().lower()
                    for part in (reg.info.secure_vip_address if secure else reg.info.vip_address).split(",")
                }
            ]
            if found:
                groups.append((name, found))
        return groups

    def delta(self) -> AppGroups:
        """Every instance changed within the retention time, as it was after its last change."""
        self._prune(self._clock())
        latest: dict[tuple[str, str], Registration] = {}
        for _, snap in self._recent:
            latest.pop(snap.key, None)
            latest[snap.key] = snap
        groups: dict[str, list[Registration]] = {}
        for (app, _), snap in latest.items():
            groups.setdefault(app, []).append(snap)
        return sorted(groups.items())

    def hashcode(self) -> str:
        """Eureka's reconcile hash: `STATUS_count_` per status in name order, e.g. `DOWN_1_UP_2_`.
        Clients compare it with the hash of their local copy after applying a delta and fetch the
        full registry when they differ."""
        if self._hash[0] != self.version:
            counts: dict[str, int] = {}
            for instances in self._apps.values():
                for reg in instances.values():
                    status = reg.effective_status.value
                    counts[status] = counts.get(status, 0) + 1
            self._hash = (self.version, "".join(f"{s}_{n}_" for s, n in sorted(counts.items())))
        return self._hash[1]

    def __len__(self) -> int:
        return sum(len(instances) for instances in self._apps.values())

    # ------------------------------------------------------------------------------ persistence
    def to_document(self) -> bytes:
        """The data file's content."""
        entries = [
            {
                "instance": info_to_json(reg.info),
                "override": reg.override.value,
                "registrationTimestamp": reg.registered_ms,
                "serviceUpTimestamp": reg.service_up_ms,
            }
            for reg in self.registrations()
        ]
        doc = {
            "format": DATA_FORMAT,
            "version": self.version,
            "savedAt": self._wall_ms(),
            "instances": entries,
        }
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"

    def restore(self, doc: object, source: str) -> None:
        """Load a data file's content (already JSON-decoded); every instance gets a fresh lease."""

        def corrupt(message: str) -> RegistryDataError:
            return RegistryDataError(f"registry data file {source} is corrupt: {message}")

        if not isinstance(doc, dict) or doc.get("format") != DATA_FORMAT:
            raise RegistryDataError(
                f"registry data file {source} is not a forecourt registry data file "
                f'(expected a JSON object with "format": "{DATA_FORMAT}")'
            )
        version = doc.get("version", 1)
        entries = doc.get("instances")
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise corrupt(f'"version" must be a non-negative integer, got {version!r}')
        if not isinstance(entries, list):
            raise corrupt('"instances" must be a list')
        now = self._clock()
        loaded: list[Registration] = []
        for index, entry in enumerate(entries):
            where = f"instances[{index}]"
            if not isinstance(entry, dict):
                raise corrupt(f"{where}: expected an object")
            try:
                info = info_from_json(entry.get("instance"))
                override = Status.parse(str(entry.get("override", "UNKNOWN")))
            except (CodecError, ValueError) as exc:
                raise corrupt(f"{where}: {exc}") from None
            if not info.app or not info.instance_id:
                raise corrupt(f"{where}: the instance has no app name or instance id")
            registered = entry.get("registrationTimestamp", 0)
            service_up = entry.get("serviceUpTimestamp", 0)
            if not isinstance(registered, int) or not isinstance(service_up, int):
                raise corrupt(f"{where}: timestamps must be integers")
            loaded.append(
                Registration(
                    info=info,
                    renewal_interval=info.renewal_interval or self.renewal_interval,
                    duration=info.duration or self.lease_duration,
                    registered_ms=registered,
                    last_renewal_ms=self._wall_ms(),
                    service_up_ms=service_up,
                    last_updated_ms=info.last_updated_timestamp or self._wall_ms(),
                    renewed_at=now,
                    override=override,
                )
            )
        self._apps.clear()
        self._recent.clear()
        for reg in loaded:
            self._apps.setdefault(reg.info.app, {})[reg.info.instance_id] = reg
        # Past versions of a previous run must never be mistaken for this run's.
        self.version = version + 1


def load_store(path: Path, **options: Any) -> RegistryStore:
    """A store with `path`'s registrations (empty when the file does not exist yet).

    Raises `RegistryDataError` for anything else that keeps the file from being used: an unreadable
    file, a missing directory (a write would fail later, after answering clients), bad JSON, or
    content that is not a registry."""
    store = RegistryStore(**options)
    if not path.parent.is_dir():
        raise RegistryDataError(f"registry data file {path}: directory {path.parent} does not exist")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return store
    except OSError as exc:
        raise RegistryDataError(f"cannot read registry data file {path}: {exc.strerror or exc}") from None
    if not raw.strip():
        raise RegistryDataError(
            f"registry data file {path} is corrupt: it is empty (a registry never writes an empty file; "
            "move it away to start with an empty registry)"
        )
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RegistryDataError(f"registry data file {path} is corrupt: not valid JSON: {exc}") from None
    store.restore(doc, str(path))
    return store


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data`: temporary file, fsync, rename, fsync of the directory."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class Persister:
    """Group commit of the store to its data file (see the module docstring).

    `commit()` returns once a write that started after the call finished; all callers that arrive
    while a write runs share the next one. The snapshot is rendered on the loop's thread when the
    write starts, so it contains every change its waiters made."""

    def __init__(self, path: Path, render: Callable[[], bytes]) -> None:
        self.path = path
        self._render = render
        self._next: asyncio.Future[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self.writes = 0

    async def commit(self) -> None:
        loop = asyncio.get_running_loop()
        if self._next is None:
            self._next = loop.create_future()
        waiter = self._next
        if self._writer is None:
            self._writer = loop.create_task(self._write_loop())
        await asyncio.shield(waiter)

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._next is not None:
                waiter, self._next = self._next, None
                try:
                    await loop.run_in_executor(None, write_atomic, self.path, self._render())
                    self.writes += 1
                except Exception as exc:
                    log.error("cannot write registry data file %s: %s", self.path, exc)
                    if not waiter.done():
                        waiter.set_exception(exc)
                        # Retrieved or not, the failure is logged; do not warn about it again.
                        waiter.exception()
                else:
                    if not waiter.done():
                        waiter.set_result(None)
        finally:
            self._writer = None

    async def close(self) -> None:
        """Wait for the write in progress, then write the final state synchronously."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._writer)
        write_atomic(self.path, self._render())
        self.writes += 1
