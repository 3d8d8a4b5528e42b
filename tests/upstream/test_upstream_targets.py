"""UpstreamTargets: targets to endpoints, DNS refresh on TTL, state kept across changes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable

import pytest
import uvloop

from forecourt.upstream import Resolver, Target, UpstreamTargets
from tests.support.dnsmasq import DnsServer

NOWHERE = "127.0.0.1:9"


def ips(targets: UpstreamTargets) -> list[str]:
    return sorted(ep.ip for ep in targets.endpoints)


async def wait_for(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def test_ip_literals_are_endpoints_immediately() -> None:
    targets = UpstreamTargets(
        [("127.0.0.1", 8080, 100), Target("127.0.0.2", 8081, 50), ("[::1]", 8082, 10)], "least-connections"
    )
    assert [(ep.key, ep.label, ep.weight) for ep in targets.endpoints] == [
        ("127.0.0.1:8080", "127.0.0.1:8080", 100),
        ("127.0.0.2:8081", "127.0.0.2:8081", 50),
        ("[::1]:8082", "[::1]:8082", 10),
    ]
    assert type(targets.balancer).__name__ == "LeastConnectionsBalancer"
    asyncio.run(targets.ready())  # nothing to resolve: ready at once, no resolver built
    assert targets._resolver is None


def test_same_address_twice_is_one_endpoint_with_summed_weight() -> None:
    targets = UpstreamTargets([("127.0.0.1", 80, 100), ("127.0.0.1", 80, 50)])
    assert [(ep.key, ep.weight) for ep in targets.endpoints] == [("127.0.0.1:80", 150)]


def test_hostname_with_two_a_records_gives_two_endpoints_sharing_traffic(dnsmasq: DnsServer) -> None:
    async def scenario() -> None:
        resolver = Resolver([dnsmasq.nameserver], hosts_file=None)
        async with UpstreamTargets(
            [("svc.test", 8080, 100), ("127.0.0.9", 9090, 100)], "round-robin", resolver, name="orders"
        ) as targets:
            assert ips(targets) == ["127.0.0.9"]  # the literal is there before DNS answers
            await asyncio.wait_for(targets.ready(), 5)
            assert ips(targets) == ["127.0.0.2", "127.0.0.3", "127.0.0.9"]
            assert {ep.host for ep in targets.endpoints} == {"svc.test", "127.0.0.9"}
            assert all(ep.weight == 100 for ep in targets.endpoints)  # each A record: the target's weight
            picks = Counter(
                ep.label + "@" + ep.ip for ep in (targets.balancer.pick() for _ in range(300)) if ep
            )
            assert picks == {
                "svc.test:8080@127.0.0.2": 100,
                "svc.test:8080@127.0.0.3": 100,
                "127.0.0.9:9090@127.0.0.9": 100,
            }
            # dnsmasq rotates the records on every answer; a new order is not a change.
            before = targets.endpoints
            await asyncio.sleep(2.2)
            assert targets.endpoints is before
        assert not targets._tasks

    uvloop.run(scenario())  # the gateway's loop: the resolver must work on it too


def test_changed_record_is_picked_up_after_the_ttl_keeping_state(dnsmasq: DnsServer) -> None:
    async def scenario() -> None:
        resolver = Resolver([dnsmasq.nameserver], hosts_file=None)
        async with UpstreamTargets([("svc.test", 8080, 100)], "least-connections", resolver) as targets:
            await asyncio.wait_for(targets.ready(), 5)
            stays = next(ep for ep in targets.endpoints if ep.ip == "127.0.0.3")
            targets.balancer.acquire(stays)
            dnsmasq.set_hosts("127.0.0.3 svc.test\n127.0.0.4 svc.test\n")
            started = time.monotonic()
            await wait_for(lambda: ips(targets) == ["127.0.0.3", "127.0.0.4"])
            assert time.monotonic() - started < 3.0  # TTL 1 s, refresh floor 1 s
            kept = next(ep for ep in targets.endpoints if ep.ip == "127.0.0.3")
            assert kept is stays and kept.active == 1
            chosen = targets.balancer.pick()  # the busy endpoint is avoided
            assert chosen is not None and chosen.ip == "127.0.0.4"

    asyncio.run(scenario())


def test_failed_reresolution_keeps_last_addresses(
    dnsmasq: DnsServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        resolver = Resolver([dnsmasq.nameserver], hosts_file=None)
        async with UpstreamTargets(
            [("svc.test", 8080, 100)], resolver=resolver, name="orders", retry_interval=0.2
        ) as targets:
            await asyncio.wait_for(targets.ready(), 5)
            dnsmasq.set_hosts("127.0.0.5 single.test\n")  # svc.test is now NXDOMAIN
            await wait_for(lambda: "resolving svc.test failed" in caplog.text)
            await asyncio.sleep(1.5)
            assert ips(targets) == ["127.0.0.2", "127.0.0.3"]
            warnings = [r for r in caplog.records if "failed" in r.getMessage()]
            assert len(warnings) == 1  # logged once per outage, not on every retry
            assert "keeping 127.0.0.2, 127.0.0.3" in warnings[0].getMessage()
            dnsmasq.set_hosts("127.0.0.6 svc.test\n")
            await wait_for(lambda: ips(targets) == ["127.0.0.6"])
            assert "svc.test resolves again" in caplog.text

    with caplog.at_level(logging.INFO, logger="forecourt.upstream"):
        asyncio.run(scenario())


def test_unresolvable_target_is_ready_with_no_endpoints(dnsmasq: DnsServer) -> None:
    async def scenario() -> None:
        resolver = Resolver([dnsmasq.nameserver], hosts_file=None)
        targets = UpstreamTargets([("absent.test", 80, 100)], "consistent-hashing", resolver)
        targets.start()
        try:
            await asyncio.wait_for(targets.ready(), 5)
            assert targets.endpoints == ()
            assert targets.balancer.pick("user-1") is None
        finally:
            await targets.close()

    asyncio.run(scenario())


def test_refresh_resolves_now(dnsmasq: DnsServer) -> None:
    async def scenario() -> None:
        resolver = Resolver([dnsmasq.nameserver], hosts_file=None)
        targets = UpstreamTargets([("single.test", 80, 100)], resolver=resolver)
        await targets.refresh()  # works without the background loop too
        assert ips(targets) == ["127.0.0.5"]
        dnsmasq.set_hosts("127.0.0.7 single.test\n")
        await targets.refresh()
        assert ips(targets) == ["127.0.0.7"]

    asyncio.run(scenario())


def test_localhost_target_resolves_without_dns() -> None:
    async def scenario() -> list[str]:
        async with UpstreamTargets([("localhost", 8080, 100)], resolver=Resolver([NOWHERE])) as targets:
            await asyncio.wait_for(targets.ready(), 5)
            return [ep.label + "@" + ep.ip for ep in targets.endpoints]

    assert asyncio.run(scenario()) == ["localhost:8080@127.0.0.1"]
