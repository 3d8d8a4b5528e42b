"""The ``dns`` provider: the addresses (A/AAAA) or service records (SRV) of one name, on its TTL.

This is server-side discovery as Kubernetes does it: a Service name
(``orders.default.svc.cluster.local``) resolves to its cluster IP, or to every ready pod's IP for a
headless Service, and ``_http._tcp.orders.default.svc.cluster.local`` lists a named port as SRV
records. The provider looks the name up again when the answer's TTL runs out (never sooner than
``interval``, which is also the period for a TTL of 0) and pushes the complete set every time; the
consumer drops unchanged sets.

SRV follows Kong: only the records of the best (lowest) priority are used, each record's weight is
its target's weight (0 counts as 1, so a lone zero-weight record still gets traffic), and each SRV
target name is resolved to its addresses; the SRV target is the ``Host`` sent upstream.

Any lookup failure, NXDOMAIN included, is reported as a failure (the last set stays in use) rather
than as an empty set: a name that vanishes for a moment (a DNS restart, negative caching during a
rollout) must not take an upstream down. A failed SRV *target* (no such name) only drops that
target.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
from collections.abc import Sequence

from forecourt.discovery.providers.backoff import Backoff
from forecourt.discovery.providers.base import DiscoveryError, DiscoverySink, TargetSpec, format_error
from forecourt.upstream.dns import DNSError, IPv6Mode, NameNotFoundError, Resolver

__all__ = ["DnsProvider", "RecordType"]

log = logging.getLogger("forecourt.discovery")

RecordType = str  # "A", "AAAA", "SRV" or "auto"
_MAX_SLEEP = 3600.0
_IPV6_MODE: dict[str, IPv6Mode] = {"A": "never", "AAAA": "also", "auto": "fallback", "SRV": "fallback"}


class DnsProvider:
    """Pushes ``name``'s targets: one per address on ``port``, or one per address of each SRV target.

    ``nameservers`` (``"ip[:port]"``) default to the system's; ``hosts_file`` is consulted first,
    as for configured targets (None skips it).
    """

    kind = "dns"

    def __init__(
        self,
        name: str,
        port: int | None = None,
        *,
        record: RecordType = "auto",
        interval: float = 1.0,
        weight: int = 100,
        nameservers: Sequence[str] | None = None,
        hosts_file: str | None = "/etc/hosts",
        timeout: float = 2.0,
    ) -> None:
        self.name = name.rstrip(".")
        self.record = record
        self.srv = record == "SRV" or (record == "auto" and self.name.startswith("_"))
        if not self.srv and port is None:
            raise ValueError(f"a port is needed for {record} records of {name}")
        self.port = port or 0
        self.interval = interval
        self.weight = weight
        self.resolver = Resolver(nameservers, hosts_file=hosts_file, ipv6=_IPV6_MODE[record], timeout=timeout)

    async def watch(self, sink: DiscoverySink) -> None:
        backoff = Backoff(initial=self.interval, maximum=max(30.0, self.interval))
        while True:
            try:
                targets, ttl = await self.lookup()
            except DiscoveryError as exc:
                sink.fail(exc)
                delay = backoff.next()
            else:
                sink.push(targets)
                backoff.reset()
                delay = max(self.interval, ttl)
            await asyncio.sleep(min(delay, _MAX_SLEEP))

    async def lookup(self) -> tuple[list[TargetSpec], float]:
        """The current targets and how many seconds they may be used (the smallest TTL involved)."""
        try:
            if self.srv:
                return await self._lookup_srv()
            addresses, ttl = await self._addresses(self.name)
        except DNSError as exc:
            raise DiscoveryError(f"DNS lookup of {self.name} failed: {format_error(exc)}") from exc
        return [TargetSpec(self.name, self.port, self.weight, ip) for ip in addresses], ttl

    async def _addresses(self, name: str) -> tuple[tuple[str, ...], float]:
        resolution = await self.resolver.resolve(name, fresh=True)
        addresses = resolution.addresses
        if self.record == "AAAA":
            addresses = tuple(a for a in addresses if ":" in a)
            if not addresses:
                raise NameNotFoundError(name, "no AAAA records")
        ttl = resolution.ttl if not math.isinf(resolution.ttl) else _MAX_SLEEP
        # Sorted: nameservers rotate the order of records, which is no change at all.
        return tuple(sorted(addresses, key=ipaddress.ip_address)), ttl

    async def _lookup_srv(self) -> tuple[list[TargetSpec], float]:
        records = await self.resolver.resolve_srv(self.name, fresh=True)
        ttl = min((r.ttl for r in records), default=_MAX_SLEEP)
        best = min((r.priority for r in records), default=0)
        targets: list[TargetSpec] = []
        for record in records:
            if record.priority != best or record.target in ("", "."):
                continue  # "." is "no service here" (RFC 2782)
            try:
                addresses, address_ttl = await self._addresses(record.target)
            except NameNotFoundError as exc:
                log.warning(
                    "discovery: SRV %s names %s, which does not resolve: %s", self.name, record.target, exc
                )
                continue
            ttl = min(ttl, address_ttl)
            weight = max(1, record.weight)
            targets.extend(TargetSpec(record.target, record.port, weight, ip) for ip in addresses)
        return targets, ttl

    def __repr__(self) -> str:
        what = "SRV" if self.srv else f"{self.record}:{self.port}"
        return f"<DnsProvider {self.name} {what}>"
