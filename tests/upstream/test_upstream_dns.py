"""The resolver against a real dnsmasq on 127.0.0.1, plus its local short-circuits."""

from __future__ import annotations

import asyncio
import math
import os
import socket
import time
from pathlib import Path

import pytest

from forecourt.upstream import DNSTimeoutError, NameNotFoundError, NameserverError, Resolver, SrvRecord
from forecourt.upstream.dns import HostsFile, parse_nameserver
from tests.support.dnsmasq import DnsServer

# Local answers must never reach a nameserver: point it at a port where nobody listens.
NOWHERE = "127.0.0.1:9"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("::1", ("::1", 53)),
        ("[::1]:5353", ("::1", 5353)),
        ("[::1]", ("::1", 53)),
    ],
)
def test_parse_nameserver(spec: str, expected: tuple[str, int]) -> None:
    assert parse_nameserver(spec) == expected


@pytest.mark.parametrize("spec", ["ns.test", "ns.test:53", ""])
def test_parse_nameserver_rejects_names(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_nameserver(spec)


def test_default_nameservers_come_from_resolv_conf(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("search test\nnameserver 127.0.0.53\nnameserver 127.0.0.54\n")
    assert Resolver(resolv_conf=conf).nameservers == [("127.0.0.53", 53), ("127.0.0.54", 53)]


def test_missing_resolv_conf_is_a_clear_error(tmp_path: Path) -> None:
    resolver = Resolver(resolv_conf=tmp_path / "absent", hosts_file=None)
    with pytest.raises(NameserverError, match="resolver configuration"):
        asyncio.run(resolver.resolve("svc.test"))


@pytest.mark.parametrize(
    ("name", "addresses"),
    [("127.0.0.7", ("127.0.0.7",)), ("::1", ("::1",)), ("[::1]", ("::1",)), ("LOCALHOST.", ("127.0.0.1",))],
)
def test_literals_and_localhost_never_query(name: str, addresses: tuple[str, ...]) -> None:
    resolver = Resolver([NOWHERE], hosts_file=None, timeout=0.2)
    resolution = asyncio.run(resolver.resolve(name))
    assert resolution.addresses == addresses
    assert resolution.source in {"literal", "hosts"}


def test_literal_never_expires() -> None:
    resolution = asyncio.run(Resolver([NOWHERE]).resolve("127.0.0.1"))
    assert math.isinf(resolution.ttl) and math.isinf(resolution.remaining())


def test_hosts_file_answers_and_is_reread(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text(
        "127.0.0.1 localhost\n::1 localhost\n127.0.0.8 db.test db # comment\n127.0.0.9 db.test\n"
    )
    resolver = Resolver([NOWHERE], hosts_file=HostsFile(hosts, check_interval=0.0), timeout=0.2)

    async def lookups() -> list[tuple[str, ...]]:
        found = [(await resolver.resolve(n)).addresses for n in ("db.test", "DB", "localhost")]
        hosts.write_text("127.0.0.10 db.test\n")
        stat = hosts.stat()
        # Make the change visible even on filesystems with coarse modification times.
        os.utime(hosts, (stat.st_atime, stat.st_mtime + 5))
        found.append((await resolver.resolve("db.test")).addresses)
        return found

    assert asyncio.run(lookups()) == [
        ("127.0.0.8", "127.0.0.9"),
        ("127.0.0.8",),
        ("127.0.0.1",),  # IPv4 first: ::1 is used only for a name without IPv4 addresses
        ("127.0.0.10",),
    ]


def test_all_a_records_with_their_ttl(dnsmasq: DnsServer) -> None:
    resolver = Resolver([dnsmasq.nameserver], hosts_file=None)
    resolution = asyncio.run(resolver.resolve("svc.test"))
    assert sorted(resolution.addresses) == ["127.0.0.2", "127.0.0.3"]
    assert resolution.ttl == 1.0 and resolution.source == "dns"
    assert 0.0 < resolution.remaining() <= 1.0


def test_ipv6_also_returns_a_records_when_no_aaaa(dnsmasq: DnsServer) -> None:
    resolver = Resolver([dnsmasq.nameserver], hosts_file=None, ipv6="also")
    assert sorted(asyncio.run(resolver.resolve("svc.test")).addresses) == ["127.0.0.2", "127.0.0.3"]


def test_cache_honours_ttl(dnsmasq: DnsServer) -> None:
    resolver = Resolver([dnsmasq.nameserver], hosts_file=None)

    async def scenario() -> None:
        first = await resolver.resolve("single.test")
        assert await resolver.resolve("single.test") is first  # cached
        dnsmasq.set_hosts("127.0.0.6 single.test\n")
        assert (await resolver.resolve("single.test")).addresses == ("127.0.0.5",)  # still cached
        assert (await resolver.resolve("single.test", fresh=True)).addresses == ("127.0.0.6",)
        dnsmasq.set_hosts("127.0.0.7 single.test\n")
        await asyncio.sleep(1.1)  # the 1 s TTL runs out
        assert (await resolver.resolve("single.test")).addresses == ("127.0.0.7",)

    asyncio.run(scenario())


def test_concurrent_lookups_share_one_query(dnsmasq: DnsServer) -> None:
    resolver = Resolver([dnsmasq.nameserver], hosts_file=None)

    async def scenario() -> None:
        results = await asyncio.gather(*(resolver.resolve("svc.test") for _ in range(5)))
        assert all(r is results[0] for r in results)
        assert not resolver._inflight

    asyncio.run(scenario())


def test_nxdomain_is_name_not_found(dnsmasq: DnsServer) -> None:
    resolver = Resolver([dnsmasq.nameserver], hosts_file=None)
    with pytest.raises(NameNotFoundError, match=r"absent\.test: no such name"):
        asyncio.run(resolver.resolve("absent.test"))


def test_refusal_is_a_nameserver_error(dnsmasq: DnsServer) -> None:
    # dnsmasq forwards nothing, so it refuses names outside the zone it serves.
    resolver = Resolver([dnsmasq.nameserver], hosts_file=None)
    with pytest.raises(NameserverError, match="REFUSED"):
        asyncio.run(resolver.resolve("elsewhere.example"))


def test_silent_nameserver_times_out() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        resolver = Resolver([f"127.0.0.1:{port}"], hosts_file=None, timeout=0.3)
        started = time.monotonic()
        with pytest.raises(DNSTimeoutError, match=r"no answer within 0\.3s"):
            asyncio.run(resolver.resolve("svc.test"))
        assert time.monotonic() - started < 2.0


def test_srv_records_sorted_by_priority(dnsmasq: DnsServer) -> None:
    resolver = Resolver([dnsmasq.nameserver], hosts_file=None)
    records = asyncio.run(resolver.resolve_srv("_http._tcp.svc.test"))
    assert records == [
        SrvRecord("a.svc.test", 8080, 5, 1, 1.0),
        SrvRecord("b.svc.test", 8081, 10, 2, 1.0),
    ]
    with pytest.raises(NameNotFoundError):
        asyncio.run(resolver.resolve_srv("_grpc._tcp.svc.test"))
