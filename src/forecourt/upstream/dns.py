"""Asynchronous name resolution for upstream targets: every address of a name, with its TTL.

``getaddrinfo`` cannot serve a load balancer: it gives no TTL (so nothing says when to look again),
and it runs in a thread pool. :class:`Resolver` asks a nameserver directly (dnspython's asyncio
client), returns all A records of a name together with the record TTL, and caches each answer for
exactly that TTL. Concurrent lookups of one name share a single query.

Order of precedence, as in Kong: an IP literal is its own answer; a name in the hosts file
(``/etc/hosts``, re-read when it changes) is answered from there, and ``localhost`` always resolves
locally; everything else goes to the nameservers (``/etc/resolv.conf`` unless given explicitly).

IPv6: Kong's default record order queries A and never AAAA. Here ``ipv6="fallback"`` (the default)
asks for AAAA only when a name has no A record, so a dual-stack name does not suddenly gain endpoints
that a service bound to an IPv4 address never listens on; ``"also"`` returns both, ``"never"`` only A.

Exceptions, all subclasses of :class:`DNSError` (itself an ``OSError``, like socket's ``gaierror``):

- :class:`NameNotFoundError`: NXDOMAIN, or the name exists without any address record.
- :class:`DNSTimeoutError`: no answer within ``timeout`` seconds.
- :class:`NameserverError`: every nameserver failed (SERVFAIL, REFUSED, unreachable).

Errors are not cached: the caller (the target refresh loop) decides when to retry.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

__all__ = [
    "DNSError",
    "DNSTimeoutError",
    "HostsFile",
    "IPv6Mode",
    "NameNotFoundError",
    "NameserverError",
    "Resolution",
    "Resolver",
    "SrvRecord",
    "is_ip_literal",
    "parse_nameserver",
]

IPv6Mode = Literal["fallback", "also", "never"]
Source = Literal["literal", "hosts", "dns"]

HOSTS_TTL = 30.0
"""How long an answer from the hosts file is considered fresh (the file is re-read if it changed)."""

_T = TypeVar("_T")


class DNSError(OSError):
    """A name could not be resolved. ``name`` is the name asked for."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


class NameNotFoundError(DNSError):
    """The name does not exist (NXDOMAIN) or has no address records."""


class DNSTimeoutError(DNSError):
    """No nameserver answered in time."""


class NameserverError(DNSError):
    """Every nameserver failed to answer (SERVFAIL, REFUSED, network error)."""


@dataclass(frozen=True, slots=True)
class Resolution:
    """The addresses of one name and how long they may be used.

    ``ttl`` is the record TTL in seconds (``inf`` for literals); ``expires_at`` is on the
    ``time.monotonic()`` clock.
    """

    name: str
    addresses: tuple[str, ...]
    ttl: float
    expires_at: float
    source: Source

    def remaining(self, now: float | None = None) -> float:
        """Seconds until this answer goes stale (never negative)."""
        if math.isinf(self.expires_at):
            return math.inf
        return max(0.0, self.expires_at - (time.monotonic() if now is None else now))


@dataclass(frozen=True, slots=True)
class SrvRecord:
    """One SRV answer: a service instance at ``target:port``, with Kong's meaning of weight/priority."""

    target: str
    port: int
    weight: int
    priority: int
    ttl: float


def is_ip_literal(host: str) -> bool:
    """True for ``127.0.0.1``, ``::1`` and ``[::1]``."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def parse_nameserver(spec: str) -> tuple[str, int]:
    """``"127.0.0.1:5353"``, ``"127.0.0.1"``, ``"[::1]:53"`` or ``"::1"`` as (address, port)."""
    address, port = spec, 53
    if spec.startswith("["):
        address, _, rest = spec[1:].partition("]")
        if rest:
            port = int(rest.removeprefix(":"))
    elif spec.count(":") == 1:
        address, _, port_text = spec.partition(":")
        port = int(port_text)
    if not is_ip_literal(address):
        raise ValueError(f"nameserver must be an IP address with an optional port, got {spec!r}")
    return address, port


class HostsFile:
    """The hosts file as name -> addresses, re-read when its modification time changes.

    The file is stat'ed at most once per ``check_interval`` seconds, so a lookup costs a dict access.
    """

    def __init__(self, path: str | os.PathLike[str] = "/etc/hosts", *, check_interval: float = 5.0) -> None:
        self.path = Path(path)
        self.check_interval = check_interval
        self._entries: dict[str, tuple[str, ...]] = {}
        self._mtime: float | None = None
        self._checked_at = -math.inf

    def lookup(self, name: str) -> tuple[str, ...]:
        """Every address listed for ``name`` (lower-case, no trailing dot), in file order."""
        now = time.monotonic()
        if now - self._checked_at >= self.check_interval:
            self._checked_at = now
            self._reload()
        return self._entries.get(name, ())

    def _reload(self) -> None:
        try:
            mtime = self.path.stat().st_mtime
            if mtime == self._mtime:
                return
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            self._entries, self._mtime = {}, None
            return
        entries: dict[str, list[str]] = {}
        for line in text.splitlines():
            fields = line.partition("#")[0].split()
            if len(fields) < 2 or not is_ip_literal(fields[0]):
                continue
            address = str(ipaddress.ip_address(fields[0]))
            for name in fields[1:]:
                listed = entries.setdefault(name.lower().rstrip("."), [])
                if address not in listed:
                    listed.append(address)
        self._entries = {name: tuple(addresses) for name, addresses in entries.items()}
        self._mtime = mtime


def _pick_families(addresses: Sequence[str], ipv6: IPv6Mode) -> tuple[str, ...]:
    v4 = tuple(a for a in addresses if ":" not in a)
    if ipv6 == "never":
        return v4
    if ipv6 == "also":
        return tuple(addresses)
    return v4 or tuple(addresses)


class Resolver:
    """Resolves upstream hostnames to all their addresses, caching each answer for its TTL.

    ``nameservers`` are ``"ip"`` or ``"ip:port"`` strings; without them the system configuration
    (``resolv_conf``, including its search domains) is read on the first query that needs it.
    ``hosts_file`` is a path, a :class:`HostsFile`, or None to skip the hosts file.
    """

    def __init__(
        self,
        nameservers: Sequence[str] | None = None,
        *,
        timeout: float = 2.0,
        hosts_file: str | os.PathLike[str] | HostsFile | None = "/etc/hosts",
        resolv_conf: str | os.PathLike[str] = "/etc/resolv.conf",
        ipv6: IPv6Mode = "fallback",
    ) -> None:
        self.timeout = timeout
        self.ipv6: IPv6Mode = ipv6
        self._nameservers = [parse_nameserver(ns) for ns in nameservers] if nameservers else None
        self._resolv_conf = os.fspath(resolv_conf)
        self._hosts = (
            hosts_file if isinstance(hosts_file, HostsFile) or hosts_file is None else HostsFile(hosts_file)
        )
        self._client: dns.asyncresolver.Resolver | None = None
        self._search = False
        self._cache: dict[str, Resolution] = {}
        self._srv_cache: dict[str, tuple[float, list[SrvRecord]]] = {}
        self._inflight: dict[tuple[str, str], asyncio.Future[Any]] = {}

    @property
    def nameservers(self) -> list[tuple[str, int]]:
        """The (address, port) pairs queried, reading the system configuration if needed."""
        client = self._dns_client()
        servers: list[tuple[str, int]] = []
        for ns in client.nameservers:
            if isinstance(ns, str):
                servers.append((ns, client.nameserver_ports.get(ns, client.port)))
            elif isinstance(ns, dns.nameserver.AddressAndPortNameserver):
                servers.append((ns.address, ns.port))
        return servers

    def clear_cache(self) -> None:
        self._cache.clear()
        self._srv_cache.clear()

    async def resolve(self, name: str, *, fresh: bool = False) -> Resolution:
        """All addresses of ``name``; a cached answer while its TTL lasts unless ``fresh``."""
        host = name.strip("[]").lower().rstrip(".")
        if is_ip_literal(host):
            address = str(ipaddress.ip_address(host))
            return Resolution(host, (address,), math.inf, math.inf, "literal")
        local = self._local(host)
        if local is not None:
            return local
        if not fresh:
            cached = self._cache.get(host)
            if cached is not None and cached.expires_at > time.monotonic():
                return cached
        return await self._single_flight(("addr", host), lambda: self._query_addresses(host))

    async def resolve_srv(self, name: str, *, fresh: bool = False) -> list[SrvRecord]:
        """The SRV records of ``name`` (e.g. ``_http._tcp.orders.default.svc.cluster.local``).

        Sorted by priority (lowest value first, the preferred ones), then by descending weight.
        Kong uses only the entries of the best priority; that choice is left to the caller.
        """
        key = name.lower().rstrip(".")
        if not fresh:
            cached = self._srv_cache.get(key)
            if cached is not None and cached[0] > time.monotonic():
                return list(cached[1])
        records = await self._single_flight(("srv", key), lambda: self._query_srv(key))
        return list(records)

    def _local(self, host: str) -> Resolution | None:
        """The hosts-file answer for ``host``, or None when the nameservers must be asked."""
        listed = self._hosts.lookup(host) if self._hosts is not None else ()
        if not listed and host == "localhost":
            listed = ("127.0.0.1", "::1")
        addresses = _pick_families(listed, self.ipv6)
        if not addresses:
            return None
        return Resolution(host, addresses, HOSTS_TTL, time.monotonic() + HOSTS_TTL, "hosts")

    async def _single_flight(self, key: tuple[str, str], query: Callable[[], Awaitable[_T]]) -> _T:
        """Run ``query`` once for concurrent callers asking the same question.

        The shared task is shielded, so one caller being cancelled does not cancel the others' answer.
        """
        future = self._inflight.get(key)
        if future is None:
            future = asyncio.ensure_future(query())
            self._inflight[key] = future
            future.add_done_callback(lambda done: self._settle(key, done))
        return cast(_T, await asyncio.shield(future))

    def _settle(self, key: tuple[str, str], done: asyncio.Future[Any]) -> None:
        if self._inflight.get(key) is done:
            del self._inflight[key]
        if not done.cancelled():
            done.exception()  # mark retrieved: every waiter may have been cancelled

    async def _query_addresses(self, host: str) -> Resolution:
        answers: list[dns.resolver.Answer] = []
        a = await self._query(host, "A")
        if a is not None:
            answers.append(a)
        if self.ipv6 == "also" or (self.ipv6 == "fallback" and a is None):
            aaaa = await self._query(host, "AAAA")
            if aaaa is not None:
                answers.append(aaaa)
        if not answers:
            raise NameNotFoundError(host, "no A or AAAA records")
        addresses = tuple(dict.fromkeys(str(rr.address) for answer in answers for rr in answer))
        ttl = float(min(answer.chaining_result.minimum_ttl for answer in answers))
        resolution = Resolution(host, addresses, ttl, time.monotonic() + ttl, "dns")
        if ttl > 0:
            self._cache[host] = resolution
        return resolution

    async def _query_srv(self, name: str) -> list[SrvRecord]:
        answer = await self._query(name, "SRV")
        if answer is None:
            raise NameNotFoundError(name, "no SRV records")
        ttl = float(answer.chaining_result.minimum_ttl)
        records = sorted(
            (
                SrvRecord(str(rr.target).rstrip("."), int(rr.port), int(rr.weight), int(rr.priority), ttl)
                for rr in answer
            ),
            key=lambda r: (r.priority, -r.weight, r.target, r.port),
        )
        if ttl > 0:
            self._srv_cache[name] = (time.monotonic() + ttl, records)
        return records

    async def _query(self, name: str, rdtype: str) -> dns.resolver.Answer | None:
        """One query; None when the name exists without records of ``rdtype``."""
        client = self._dns_client()
        try:
            answer = await client.resolve(
                name, rdtype, lifetime=self.timeout, search=self._search, raise_on_no_answer=False
            )
        except dns.resolver.NXDOMAIN as exc:
            raise NameNotFoundError(name, "no such name (NXDOMAIN)") from exc
        except dns.resolver.LifetimeTimeout as exc:
            raise DNSTimeoutError(name, f"no answer within {self.timeout:g}s") from exc
        except dns.resolver.NoNameservers as exc:
            raise NameserverError(name, str(exc)) from exc
        except dns.exception.DNSException as exc:
            raise DNSError(name, str(exc) or type(exc).__name__) from exc
        return answer if answer.rrset is not None else None

    def _dns_client(self) -> dns.asyncresolver.Resolver:
        """The dnspython client, built on first use so names that never reach DNS need no config."""
        if self._client is not None:
            return self._client
        if self._nameservers is not None:
            client = dns.asyncresolver.Resolver(configure=False)
            client.nameservers = [dns.nameserver.Do53Nameserver(a, p) for a, p in self._nameservers]
        else:
            try:
                client = dns.asyncresolver.Resolver(filename=self._resolv_conf, configure=True)
            except (OSError, dns.exception.DNSException) as exc:
                raise NameserverError("", f"cannot read resolver configuration {self._resolv_conf}") from exc
            self._search = True
        client.timeout = self.timeout
        client.lifetime = self.timeout
        self._client = client
        return client
