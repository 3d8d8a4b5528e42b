"""The dns provider against a real dnsmasq: A/AAAA and SRV records, followed on their TTL (1 s)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from forecourt.discovery import DiscoveredTargets, DnsProvider, TargetSpec
from tests.discovery.conftest import keys, wait_for
from tests.support.dnsmasq import DNSMASQ, DnsServer, _free_port, _wait_until_answering, run_dnsmasq


@pytest.fixture
def dnsmasq(tmp_path: Path) -> Iterator[DnsServer]:
    with run_dnsmasq(tmp_path) as server:
        if server is None:
            pytest.fail("dnsmasq is not installed: `make test` installs it (scripts/install-system-deps.sh)")
        yield server


def a_provider(server: DnsServer, name: str = "svc.test", record: str = "A") -> DnsProvider:
    return DnsProvider(
        name, 8080, record=record, interval=0.2, nameservers=[server.nameserver], hosts_file=None
    )


def test_a_records_become_targets_and_follow_a_change_within_the_ttl(dnsmasq: DnsServer) -> None:
    async def scenario() -> None:
        async with DiscoveredTargets(a_provider(dnsmasq), name="orders") as source:
            await asyncio.wait_for(source.ready(), 5)
            assert keys(source) == ["127.0.0.2:8080", "127.0.0.3:8080"]
            assert {ep.host for ep in source.endpoints} == {"svc.test"}  # the Host sent upstream
            kept = next(ep for ep in source.endpoints if ep.ip == "127.0.0.3")
            await asyncio.to_thread(dnsmasq.set_hosts, "127.0.0.3 svc.test\n127.0.0.4 svc.test\n")
            took = await wait_for(lambda: keys(source) == ["127.0.0.3:8080", "127.0.0.4:8080"], 4)
            assert took < 1.5, f"a TTL of 1 s took {took:.2f}s to apply"
            assert kept in source.endpoints and next(e for e in source.endpoints if e == kept) is kept

    asyncio.run(scenario())


def test_the_ttl_sets_the_refresh_period_not_the_interval(dnsmasq: DnsServer) -> None:
    async def scenario() -> None:
        provider = a_provider(dnsmasq)
        targets, ttl = await provider.lookup()
        assert ttl == 1 and [t.address for t in targets] == ["127.0.0.2", "127.0.0.3"]
        lookups = 0
        real = provider.lookup

        async def counted() -> tuple[list[TargetSpec], float]:
            nonlocal lookups
            lookups += 1
            return await real()

        provider.lookup = counted  # type: ignore[method-assign]
        async with DiscoveredTargets(provider, name="orders"):
            await asyncio.sleep(2.5)
        assert 2 <= lookups <= 4, lookups  # every TTL (1 s), not every interval (0.2 s)

    asyncio.run(scenario())


def test_aaaa_records(dnsmasq: DnsServer) -> None:
    dnsmasq.set_hosts("127.0.0.2 svc.test\n::1 svc.test\n::1 v6.test\n")

    async def scenario() -> None:
        targets, _ = await a_provider(dnsmasq, "svc.test", "AAAA").lookup()
        assert [(t.host, t.address, t.port) for t in targets] == [("svc.test", "::1", 8080)]
        targets, _ = await a_provider(dnsmasq, "svc.test", "A").lookup()
        assert [t.address for t in targets] == ["127.0.0.2"]
        targets, _ = await a_provider(dnsmasq, "v6.test", "auto").lookup()  # no A: AAAA fallback
        assert [t.address for t in targets] == ["::1"]
        async with DiscoveredTargets(a_provider(dnsmasq, "v6.test", "AAAA"), name="v6") as source:
            await asyncio.wait_for(source.ready(), 5)
            assert keys(source) == ["[::1]:8080"]

    asyncio.run(scenario())


def test_a_name_that_disappears_keeps_the_last_set(dnsmasq: DnsServer) -> None:
    async def scenario() -> None:
        async with DiscoveredTargets(a_provider(dnsmasq), name="orders") as source:
            await asyncio.wait_for(source.ready(), 5)
            await asyncio.to_thread(dnsmasq.set_hosts, "127.0.0.5 single.test\n")
            await wait_for(lambda: source.status.state == "stale", 4)
            assert keys(source) == ["127.0.0.2:8080", "127.0.0.3:8080"]
            assert "svc.test" in (source.status.error or "")
            await asyncio.to_thread(dnsmasq.set_hosts, "127.0.0.6 svc.test\n")
            await wait_for(lambda: keys(source) == ["127.0.0.6:8080"], 5)
            assert source.status.state == "ok"

    asyncio.run(scenario())


# --- SRV --------------------------------------------------------------------------------------

HOSTS = "127.0.0.2 svc.test\n127.0.0.2 a.svc.test\n127.0.0.3 b.svc.test\n127.0.0.4 c.svc.test\n"


@contextlib.contextmanager
def srv_dnsmasq(workdir: Path, records: list[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """dnsmasq serving ``records`` (``--srv-host`` values) on ``port``; SRV records are command-line
    only (SIGHUP does not reload them), so a test changes them by restarting on the same port."""
    assert DNSMASQ is not None, "dnsmasq is missing: make test installs it"
    hosts = workdir / "hosts"
    if not hosts.exists():
        hosts.write_text(HOSTS)
    args = [
        DNSMASQ, "--no-daemon", "--conf-file=/dev/null", "--pid-file=", f"--port={port}",
        "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
        f"--addn-hosts={hosts}", "--local=/test/", "--local-ttl=1",
        *(f"--srv-host={record}" for record in records),
    ]  # fmt: skip
    if os.geteuid() == 0:
        args.append("--user=root")
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait_until_answering(port, process), "dnsmasq did not start"
        yield process
    finally:
        process.terminate()
        process.wait(5)


def test_srv_records_best_priority_weights_and_a_changed_record_set(tmp_path: Path) -> None:
    port = _free_port()
    first = [
        "_http._tcp.svc.test,a.svc.test,8080,1,5",
        "_http._tcp.svc.test,b.svc.test,8081,1,10",
        "_http._tcp.svc.test,c.svc.test,8082,2,10",  # a backup: a worse priority is not used
    ]
    provider = DnsProvider(
        "_http._tcp.svc.test", interval=0.2, nameservers=[f"127.0.0.1:{port}"], hosts_file=None
    )
    assert provider.srv  # "auto" with a leading underscore

    async def scenario() -> None:
        with srv_dnsmasq(tmp_path, first, port) as process:
            source = DiscoveredTargets(provider, name="orders")
            await asyncio.wait_for(source.ready(), 5)
            assert {(ep.key, ep.host, ep.weight) for ep in source.endpoints} == {
                ("127.0.0.2:8080", "a.svc.test", 5),
                ("127.0.0.3:8081", "b.svc.test", 10),
            }
            # The SRV target's own address changes: followed on the A record's TTL.
            (tmp_path / "hosts").write_text(HOSTS.replace("127.0.0.2 a.svc", "127.0.0.9 a.svc"))
            process.send_signal(1)  # SIGHUP: re-read the hosts file
            took = await wait_for(lambda: keys(source) == ["127.0.0.3:8081", "127.0.0.9:8080"], 4)
            assert took < 1.6, took
        # New SRV records (dnsmasq restarted with them, on the same port).
        with srv_dnsmasq(tmp_path, ["_http._tcp.svc.test,c.svc.test,8082,1,0"], port):
            await wait_for(lambda: keys(source) == ["127.0.0.4:8082"], 5)
            assert source.endpoints[0].weight == 1  # SRV weight 0 still gets traffic
            assert source.status.state == "ok"
        await source.close()

    asyncio.run(scenario())
