"""The etcd provider against a real etcd: full read, watch, compaction, outage and recovery."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

import pytest

from forecourt.discovery import DiscoveredTargets, EtcdProvider, TargetSpec
from forecourt.discovery.providers.backoff import Backoff
from forecourt.discovery.providers.etcd import _Resync, parse_instance, prefix_range_end
from tests.discovery.conftest import keys, wait_for
from tests.support.etcd import EtcdServer

_prefixes = itertools.count()


def prefix() -> str:
    return f"/services/t{next(_prefixes)}/"


def provider(etcd: EtcdServer, at: str) -> EtcdProvider:
    return EtcdProvider([etcd.url], at, timeout=2.0, backoff=Backoff(initial=0.05, maximum=0.3))


@pytest.mark.parametrize(
    ("prefix", "end"),
    [(b"/a/", b"/a0"), (b"a\xff", b"b"), (b"\xff\xff", b"\0"), (b"", b"\0")],
)
def test_prefix_range_end(prefix: bytes, end: bytes) -> None:
    assert prefix_range_end(prefix) == end


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b'{"host": "127.0.0.1", "port": 8080}', TargetSpec("127.0.0.1", 8080)),
        (b'{"host": "a.test", "port": 81, "weight": 5}', TargetSpec("a.test", 81, 5)),
        (b'{"host": "a.test", "port": 81, "address": "10.0.0.1"}', TargetSpec("a.test", 81, 100, "10.0.0.1")),
        (b'{"host": "::1", "port": 81}', TargetSpec("::1", 81)),
    ],
)
def test_instance_values(value: bytes, expected: TargetSpec) -> None:
    assert parse_instance(value) == expected


@pytest.mark.parametrize(
    "value",
    [b"nope", b"[1]", b'{"port": 1}', b'{"host": "a", "port": 0}', b'{"host": "a", "port": true}',
     b'{"host": "a", "port": 1, "weight": -1}', b'{"host": "a", "port": 1, "address": "x"}'],
)  # fmt: skip
def test_bad_instance_values_are_rejected(value: bytes) -> None:
    with pytest.raises(ValueError):
        parse_instance(value)


def test_follows_puts_and_deletes(etcd: EtcdServer) -> None:
    at = prefix()
    etcd.put(at + "a", {"host": "127.0.0.1", "port": 8001})
    etcd.put(at + "junk", "not json")  # skipped, not fatal
    etcd.put(at.rstrip("/") + "x/other", {"host": "127.0.0.1", "port": 9})  # outside the prefix

    async def scenario() -> None:
        async with DiscoveredTargets(provider(etcd, at), name="orders") as source:
            await asyncio.wait_for(source.ready(), 5)
            assert keys(source) == ["127.0.0.1:8001"]
            assert source.status.state == "ok"
            first = source.endpoints[0]
            first.active = 3  # a request in flight: the object must survive the next change
            etcd.put(at + "b", {"host": "127.0.0.1", "port": 8002, "weight": 50})
            took = await wait_for(lambda: len(source.endpoints) == 2, 3)
            assert took < 1.0, took
            assert source.endpoints[0] is first and first.active == 3
            assert {ep.key: ep.weight for ep in source.endpoints} == {
                "127.0.0.1:8001": 100,
                "127.0.0.1:8002": 50,
            }
            etcd.delete(at + "a")
            await wait_for(lambda: keys(source) == ["127.0.0.1:8002"], 3)
            etcd.put(at + "b", {"host": "127.0.0.1", "port": 8003})  # modified in place
            await wait_for(lambda: keys(source) == ["127.0.0.1:8003"], 3)
            assert source.status.changes == 4

    asyncio.run(scenario())


def test_identical_snapshots_are_dropped(etcd: EtcdServer) -> None:
    at = prefix()
    etcd.put(at + "a", {"host": "127.0.0.1", "port": 8001})

    async def scenario() -> None:
        async with DiscoveredTargets(provider(etcd, at), name="orders") as source:
            await asyncio.wait_for(source.ready(), 5)
            balancer_endpoints = source.balancer.endpoints
            etcd.put(at + "a", {"host": "127.0.0.1", "port": 8001})  # same value, new revision
            etcd.put(at + "junk", "still not an instance")
            await asyncio.sleep(0.3)
            assert source.status.changes == 1
            assert source.balancer.endpoints is balancer_endpoints  # set_endpoints never called

    asyncio.run(scenario())


class Recorder:
    def __init__(self) -> None:
        self.pushed: list[list[TargetSpec]] = []
        self.failures: list[str] = []

    def push(self, targets: Sequence[TargetSpec]) -> None:
        self.pushed.append(list(targets))

    def fail(self, error: BaseException | str) -> None:
        self.failures.append(str(error))


def test_a_watch_from_a_compacted_revision_asks_for_a_full_resync(etcd: EtcdServer) -> None:
    at = prefix()
    etcd.put(at + "a", {"host": "127.0.0.1", "port": 8001})

    async def scenario() -> None:
        watcher = provider(etcd, at)
        await watcher._read_all({})
        missed = watcher.revision
        etcd.put(at + "b", {"host": "127.0.0.1", "port": 8002})
        etcd.compact(etcd.put(at + "c", {"host": "127.0.0.1", "port": 8003}))
        with pytest.raises(_Resync):
            await asyncio.wait_for(watcher._follow({}, Recorder()), 5)
        assert watcher.revision == missed
        # The watch loop answers _Resync with a full read: every key, none missed.
        recorder = Recorder()
        task = asyncio.create_task(watcher.watch(recorder))
        await wait_for(lambda: bool(recorder.pushed), 3)
        task.cancel()
        assert [t.port for t in recorder.pushed[0]] == [8001, 8002, 8003]

    asyncio.run(scenario())


def test_outage_keeps_the_last_set_and_recovers(fresh_etcd: EtcdServer) -> None:
    at = prefix()
    fresh_etcd.put(at + "a", {"host": "127.0.0.1", "port": 8001})

    async def scenario() -> None:
        async with DiscoveredTargets(provider(fresh_etcd, at), name="orders") as source:
            await asyncio.wait_for(source.ready(), 5)
            await asyncio.to_thread(fresh_etcd.kill)
            await wait_for(lambda: source.status.state == "stale", 3)
            assert keys(source) == ["127.0.0.1:8001"]  # the last known set stays
            status = source.status
            assert status.error and "etcd" in status.error and status.targets == 1
            await asyncio.to_thread(fresh_etcd.start)
            await asyncio.to_thread(fresh_etcd.put, at + "b", {"host": "127.0.0.1", "port": 8002})
            took = await wait_for(lambda: len(source.endpoints) == 2, 5)
            assert source.status.state == "ok" and source.status.error is None
            assert took < 3, took

    asyncio.run(scenario())


def test_unreachable_from_the_start_is_stale_with_no_targets() -> None:
    async def scenario() -> None:
        dead = EtcdProvider(["http://127.0.0.1:9"], "/x/", timeout=0.5, backoff=Backoff(0.05, 0.1))
        async with DiscoveredTargets(dead, name="orders") as source:
            await asyncio.wait_for(source.ready(), 3)
            assert source.status.state == "stale" and list(source.endpoints) == []
            assert source.balancer.pick() is None

    asyncio.run(scenario())
