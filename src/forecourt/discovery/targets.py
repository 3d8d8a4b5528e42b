"""An upstream whose targets come from a discovery provider: the watcher between provider and balancer.

:class:`DiscoveredTargets` is what the plan holds for such an upstream (the same ``TargetSource``
shape as :class:`~forecourt.upstream.UpstreamTargets`, which it wraps). It runs the provider's
watch as one task and takes every pushed set like Traefik's configuration watcher: a set equal to
the last applied one is dropped; a changed one goes to ``UpstreamTargets.set_targets``, which hands
the new endpoints to ``balancer.set_endpoints``. That merge keeps the object (and so the in-flight
count, health and balancer bookkeeping) of every endpoint that stays, and a request in flight on a
removed endpoint finishes on the object it holds. No reload, no plan swap, nothing dropped.

Failure policy: when the provider reports a failure the last applied set stays in use and
:attr:`status` turns ``stale``, with the error and since when; the next successful push makes it
``ok`` again. Until the first push (or failure) it is ``pending``. The admin API's upstream health
and the metrics read :attr:`status`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from forecourt.discovery.providers import DiscoveryProvider, TargetSpec, format_error
from forecourt.observability.metrics import REGISTRY
from forecourt.upstream import Balancer, Endpoint, Resolver, Target, UpstreamTargets

__all__ = ["DiscoveredTargets", "DiscoveryState", "DiscoveryStatus"]

log = logging.getLogger("forecourt.discovery")

DiscoveryState = Literal["pending", "ok", "stale"]
_RESTART_DELAY = 1.0

_CHANGES = REGISTRY.counter(
    "forecourt_discovery_changes_total",
    "Target sets applied to an upstream from its discovery provider (unchanged sets not counted).",
    ("upstream", "provider"),
)
_FAILURES = REGISTRY.counter(
    "forecourt_discovery_failures_total",
    "Failed reads of an upstream's discovery source (the last known targets stay in use).",
    ("upstream", "provider"),
)


@dataclass(frozen=True, slots=True)
class DiscoveryStatus:
    """Where an upstream's discovery stands. Times are Unix seconds (``time.time()``).

    ``since``: when ``state`` last changed. ``updated_at``: the last successful read (changed or
    not). ``changed_at``: the last time the set actually changed. ``error``: the latest failure
    while ``stale`` (None otherwise).
    """

    provider: str
    state: DiscoveryState
    since: float
    targets: int = 0
    error: str | None = None
    updated_at: float | None = None
    changed_at: float | None = None
    changes: int = 0
    failures: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape the admin API shows."""
        return {
            "provider": self.provider,
            "status": self.state,
            "since": round(self.since, 3),
            "targets": self.targets,
            "error": self.error,
            "updated_at": None if self.updated_at is None else round(self.updated_at, 3),
            "changed_at": None if self.changed_at is None else round(self.changed_at, 3),
            "changes": self.changes,
            "failures": self.failures,
        }


class DiscoveredTargets:
    """Keeps ``balancer``'s endpoints equal to what ``provider`` last pushed.

    Lifecycle as for ``UpstreamTargets``: :meth:`start` inside the loop, :meth:`ready` waits for the
    first push or failure (and for hostnames in it to resolve), :meth:`close` stops everything.
    """

    def __init__(
        self,
        provider: DiscoveryProvider,
        algorithm: str = "round-robin",
        resolver: Resolver | None = None,
        *,
        slots: int = 10_000,
        name: str = "",
    ) -> None:
        self.provider = provider
        self.name = name
        self.inner = UpstreamTargets([], algorithm, resolver, slots=slots, name=name)
        self.status = DiscoveryStatus(provider.kind, "pending", time.time())
        self.current: tuple[TargetSpec, ...] = ()
        self._applied: tuple[TargetSpec, ...] | None = None
        self._first = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ TargetSource
    @property
    def balancer(self) -> Balancer:
        return self.inner.balancer

    @property
    def endpoints(self) -> Sequence[Endpoint]:
        return self.inner.balancer.endpoints

    def start(self) -> None:
        """Start the provider's watch (idempotent; inside the running loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"forecourt-discovery:{self.name or '?'}:{self.provider.kind}"
            )
        self.inner.start()

    async def ready(self) -> None:
        """Wait for the first push or failure, then for the pushed hostnames' first resolution."""
        self.start()
        await self._first.wait()
        await self.inner.ready()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.inner.close()

    async def __aenter__(self) -> DiscoveredTargets:
        self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ DiscoverySink
    def push(self, targets: Sequence[TargetSpec]) -> None:
        """A complete set from the provider: applied at once unless it equals the last one."""
        snapshot = tuple(sorted(targets))
        now = time.time()
        changed = snapshot != self._applied
        if changed:
            self._apply(snapshot)
            _CHANGES.counter(self.name, self.provider.kind).value += 1
        status = self.status
        if status.state != "ok":
            if status.state == "stale":
                log.info(
                    "upstream %s: %s discovery recovered after %.1fs",
                    self.name,
                    status.provider,
                    now - status.since,
                )
            status = DiscoveryStatus(
                status.provider, "ok", now, changes=status.changes, failures=status.failures
            )
        self.status = DiscoveryStatus(
            status.provider,
            "ok",
            status.since,
            targets=len(snapshot),
            updated_at=now,
            changed_at=now if changed else status.changed_at,
            changes=status.changes + int(changed),
            failures=status.failures,
        )
        self._first.set()

    def fail(self, error: BaseException | str) -> None:
        """The provider could not read its source: keep the last set, mark the status stale."""
        message = format_error(error)
        status = self.status
        _FAILURES.counter(self.name, self.provider.kind).value += 1
        if status.state != "stale":
            kept = (
                f"keeping the last {len(self.current)} target(s)"
                if self._applied is not None
                else "no targets yet"
            )
            log.warning(
                "upstream %s: %s discovery failed (%s); %s", self.name, status.provider, message, kept
            )
        since = status.since if status.state == "stale" else time.time()
        self.status = DiscoveryStatus(
            status.provider,
            "stale",
            since,
            targets=len(self.current),
            error=message,
            updated_at=status.updated_at,
            changed_at=status.changed_at,
            changes=status.changes,
            failures=status.failures + 1,
        )
        self._first.set()

    # ------------------------------------------------------------------ internals
    def _apply(self, snapshot: tuple[TargetSpec, ...]) -> None:
        self._applied = snapshot
        self.current = snapshot
        log.info(
            "upstream %s: %s discovery -> %s",
            self.name,
            self.provider.kind,
            ", ".join(str(t) for t in snapshot) or "no targets",
        )
        self.inner.set_targets(Target(t.host, t.port, t.weight, t.address) for t in snapshot)

    async def _run(self) -> None:
        while True:
            try:
                await self.provider.watch(self)
                message = "the provider's watch ended"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # A provider bug must not end discovery for good: report it, keep the set, restart.
                log.exception("upstream %s: %s discovery crashed", self.name, self.provider.kind)
                message = f"provider error: {format_error(exc)}"
            self.fail(message)
            await asyncio.sleep(_RESTART_DELAY)

    def __repr__(self) -> str:
        state = f"{self.status.state} {len(self.endpoints)} endpoints"
        return f"<DiscoveredTargets {self.name or '?'} {self.provider!r} {state}>"
