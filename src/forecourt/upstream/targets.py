"""An upstream's configured targets turned into live balancer endpoints, kept current from DNS.

A target is ``host:port`` with a weight. An IP-literal target is one endpoint from the start. A
hostname target becomes one endpoint per address it resolves to, each with the target's full weight
(Kong's rule for A records: a target of weight 100 with three addresses weighs 300 in total). Each
distinct hostname has one background task that re-resolves it when its TTL runs out and hands any
change to the balancer through ``set_endpoints``, which keeps the state of addresses that stay.

Failure policy: a failed re-resolution keeps the last known addresses (a DNS outage must not empty a
healthy upstream) and retries every ``retry_interval`` seconds; a hostname that never resolved simply
contributes no endpoints, and the proxy answers 503 while no endpoint is usable. A TTL of 0 (Kong:
resolve on every request) is re-polled every ``min_refresh`` seconds instead, keeping DNS off the
request path.

Two targets that resolve to the same ``ip:port`` share one endpoint whose weight is their sum; the
first target's name is its ``Host``.

Discovery (``forecourt.discovery``) replaces the whole target list at run time with
:meth:`UpstreamTargets.set_targets`; a discovered target may come with its ``address`` already
resolved (DNS and Eureka providers), and then ``host`` is only the name sent as ``Host``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType

from forecourt.upstream.balancers import Balancer, make_balancer
from forecourt.upstream.dns import DNSError, Resolver, is_ip_literal
from forecourt.upstream.endpoint import Endpoint

__all__ = ["Target", "UpstreamTargets"]

logger = logging.getLogger("forecourt.upstream")


@dataclass(frozen=True, slots=True)
class Target:
    """One configured target: Kong's ``targets[].target`` split into host and port, and its weight.

    ``address``: the IP to dial when it is already known (a discovered target); ``host`` is then
    not resolved.
    """

    host: str
    port: int
    weight: int = 100
    address: str | None = None

    @property
    def is_literal(self) -> bool:
        return is_ip_literal(self.host)

    @property
    def needs_dns(self) -> bool:
        return self.address is None and not self.is_literal


class UpstreamTargets:
    """Maintains ``balancer``'s endpoints for one upstream from its targets and DNS.

    Use as ``async with UpstreamTargets(...) as targets: await targets.ready()``, or call
    :meth:`start` (inside a running loop) and :meth:`close` explicitly. :attr:`balancer` is the same
    object for the whole lifetime, so the proxy may hold on to it.
    """

    def __init__(
        self,
        targets: Iterable[Target | tuple[str, int, int]],
        algorithm: str = "round-robin",
        resolver: Resolver | None = None,
        *,
        slots: int = 10_000,
        name: str = "",
        min_refresh: float = 1.0,
        retry_interval: float = 5.0,
    ) -> None:
        self.targets: tuple[Target, ...] = tuple(t if isinstance(t, Target) else Target(*t) for t in targets)
        self.name = name
        self.min_refresh = min_refresh
        self.retry_interval = retry_interval
        self._resolver = resolver
        self._hostnames = self._hostnames_of(self.targets)
        self._started = False
        self._stopped: set[asyncio.Task[None]] = set()
        self._addresses: dict[str, tuple[str, ...]] = {}
        self._failing: set[str] = set()
        self._pending = set(self._hostnames)
        self._ready = asyncio.Event()
        if not self._pending:
            self._ready.set()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._signature: tuple[tuple[str, str, int], ...] = ()
        endpoints = self._build_endpoints()
        self._signature = self._signature_of(endpoints)
        self.balancer: Balancer = make_balancer(algorithm, endpoints, slots=slots)

    @property
    def endpoints(self) -> Sequence[Endpoint]:
        return self.balancer.endpoints

    @property
    def resolver(self) -> Resolver:
        """The resolver in use, created from the system configuration on first need."""
        if self._resolver is None:
            self._resolver = Resolver()
        return self._resolver

    def start(self) -> None:
        """Start one refresh task per hostname. Idempotent; must run inside the event loop."""
        self._started = True
        for host in self._hostnames:
            if host not in self._tasks:
                task = asyncio.get_running_loop().create_task(
                    self._refresh_loop(host), name=f"forecourt-dns:{self.name or '?'}:{host}"
                )
                self._tasks[host] = task

    async def ready(self) -> None:
        """Wait until every hostname has had its first resolution attempt (successful or not).

        Starts the refresh tasks if :meth:`start` was not called. Bound it with ``asyncio.timeout``.
        """
        self.start()
        await self._ready.wait()

    def set_targets(self, targets: Iterable[Target]) -> None:
        """Replace the targets (a discovery snapshot) and apply the change to the balancer at once.

        Endpoints that stay keep their state (``set_endpoints``); a request in flight on a removed
        one finishes on the object it holds. New hostnames get a refresh task when started (their
        addresses join once resolved); a hostname no longer listed stops being resolved.
        """
        self.targets = tuple(targets)
        hostnames = self._hostnames_of(self.targets)
        for host in set(self._hostnames) - set(hostnames):
            task = self._tasks.pop(host, None)
            if task is not None:
                task.cancel()
                self._stopped.add(task)
                task.add_done_callback(self._stopped.discard)
            self._addresses.pop(host, None)
            self._failing.discard(host)
            self._pending.discard(host)
        self._hostnames = hostnames
        if not self._pending:
            self._ready.set()
        if self._started:
            self.start()
        self._apply()

    async def refresh(self) -> None:
        """Re-resolve every hostname now, bypassing cached answers (admin "refresh", tests)."""
        await asyncio.gather(*(self._resolve_once(host, fresh=True) for host in self._hostnames))

    async def close(self) -> None:
        """Stop the refresh tasks and wait for them to finish."""
        tasks = [*self._tasks.values(), *self._stopped]
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> UpstreamTargets:
        self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _refresh_loop(self, host: str) -> None:
        fresh = False
        while True:
            ttl = await self._resolve_once(host, fresh=fresh)
            fresh = True
            if host in self._pending:
                self._pending.discard(host)
                if not self._pending:
                    self._ready.set()
            delay = self.retry_interval if ttl is None else max(self.min_refresh, ttl)
            if math.isinf(delay):
                return  # an IP literal found through the hosts file never changes
            await asyncio.sleep(delay)

    async def _resolve_once(self, host: str, *, fresh: bool) -> float | None:
        """Resolve ``host`` and apply the result; the answer's TTL, or None if it failed."""
        try:
            resolution = await self.resolver.resolve(host, fresh=fresh)
        except DNSError as exc:
            known = self._addresses.get(host, ())
            if host not in self._failing:
                self._failing.add(host)
                kept = f"keeping {', '.join(known)}" if known else "no addresses yet"
                logger.warning("upstream %s: resolving %s failed (%s); %s", self.name, host, exc, kept)
            return None
        except Exception:
            # A bug must not silently end the refresh loop: log it and retry later.
            logger.exception("upstream %s: unexpected error resolving %s", self.name, host)
            return None
        if host in self._failing:
            self._failing.discard(host)
            logger.info("upstream %s: %s resolves again", self.name, host)
        # Sorted: nameservers rotate the order of records, which is no change at all.
        addresses = tuple(sorted(resolution.addresses, key=ipaddress.ip_address))
        if self._addresses.get(host) != addresses:
            logger.info(
                "upstream %s: %s -> %s (ttl %gs)", self.name, host, ", ".join(addresses), resolution.ttl
            )
            self._addresses[host] = addresses
            self._apply()
        return resolution.ttl

    def _apply(self) -> None:
        endpoints = self._build_endpoints()
        signature = self._signature_of(endpoints)
        if signature != self._signature:
            self._signature = signature
            self.balancer.set_endpoints(endpoints)

    def _build_endpoints(self) -> list[Endpoint]:
        merged: dict[str, Endpoint] = {}
        for target in self.targets:
            if target.address is not None:
                host = target.host
                addresses: tuple[str, ...] = (str(ipaddress.ip_address(target.address.strip("[]"))),)
            elif target.is_literal:
                host = str(ipaddress.ip_address(target.host.strip("[]")))
                addresses = (host,)
            else:
                host = target.host
                addresses = self._addresses.get(host.lower().rstrip("."), ())
            for ip in addresses:
                ep = Endpoint(host, ip, target.port, target.weight)
                existing = merged.get(ep.key)
                if existing is None:
                    merged[ep.key] = ep
                else:
                    existing.weight += target.weight
        return list(merged.values())

    @staticmethod
    def _hostnames_of(targets: Iterable[Target]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t.host.lower().rstrip(".") for t in targets if t.needs_dns))

    @staticmethod
    def _signature_of(endpoints: Iterable[Endpoint]) -> tuple[tuple[str, str, int], ...]:
        return tuple((ep.key, ep.host, ep.weight) for ep in endpoints)

    def __repr__(self) -> str:
        name = self.name or "?"
        return f"<UpstreamTargets {name} {len(self.targets)} targets {len(self.endpoints)} endpoints>"
