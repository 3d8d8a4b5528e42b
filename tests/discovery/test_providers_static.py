"""The static provider, and the watcher's own rules: dedupe, state kept, a crashing provider."""

from __future__ import annotations

import asyncio

from forecourt.discovery import DiscoveredTargets, DiscoverySink, StaticProvider, TargetSpec
from tests.discovery.conftest import keys, wait_for


def test_static_targets_are_pushed_once() -> None:
    async def scenario() -> None:
        provider = StaticProvider([TargetSpec("127.0.0.1", 8001), TargetSpec("127.0.0.1", 8002, 5)])
        async with DiscoveredTargets(provider, "least-connections", name="pool") as source:
            await asyncio.wait_for(source.ready(), 1)
            assert [(ep.key, ep.weight) for ep in source.endpoints] == [
                ("127.0.0.1:8001", 100),
                ("127.0.0.1:8002", 5),
            ]
            assert type(source.balancer).__name__ == "LeastConnectionsBalancer"
            assert source.status.state == "ok" and source.status.changes == 1

    asyncio.run(scenario())


class Scripted:
    """A provider driven by the test: it pushes or fails whatever the test puts in its queue."""

    kind = "scripted"

    def __init__(self) -> None:
        self.queue: asyncio.Queue[list[TargetSpec] | str | Exception] = asyncio.Queue()

    async def watch(self, sink: DiscoverySink) -> None:
        while True:
            item = await self.queue.get()
            if isinstance(item, Exception):
                raise item
            if isinstance(item, str):
                sink.fail(item)
            else:
                sink.push(item)


def test_sets_replace_endpoints_keeping_state_and_dropping_duplicates() -> None:
    async def scenario() -> None:
        provider = Scripted()
        async with DiscoveredTargets(provider, name="pool") as source:
            one, two, three = (TargetSpec("127.0.0.1", 8000 + n) for n in (1, 2, 3))
            provider.queue.put_nowait([one, two])
            await asyncio.wait_for(source.ready(), 1)
            held = source.balancer.pick()
            assert held is not None
            source.balancer.acquire(held)  # a request in flight
            provider.queue.put_nowait([two, one])  # same set, other order: dropped
            provider.queue.put_nowait([three, two, one])
            await wait_for(lambda: len(source.endpoints) == 3)
            assert source.status.changes == 2
            assert any(ep is held and ep.active == 1 for ep in source.endpoints)
            provider.queue.put_nowait([three])  # `held` leaves while its request is in flight
            await wait_for(lambda: keys(source) == ["127.0.0.1:8003"])
            source.balancer.release(held)  # the request finishes on the object it holds
            assert held.active == 0

    asyncio.run(scenario())


def test_failures_mark_stale_keep_the_set_and_a_crashed_provider_restarts() -> None:
    async def scenario() -> None:
        provider = Scripted()
        async with DiscoveredTargets(provider, name="pool") as source:
            initial = source.status
            assert initial.state == "pending"
            provider.queue.put_nowait([TargetSpec("127.0.0.1", 8001)])
            await asyncio.wait_for(source.ready(), 1)
            provider.queue.put_nowait("registry unreachable")
            await wait_for(lambda: source.status.state == "stale")
            since = source.status.since
            provider.queue.put_nowait("still unreachable")
            await wait_for(lambda: source.status.error == "still unreachable")
            assert source.status.since == since and source.status.failures == 2
            assert keys(source) == ["127.0.0.1:8001"]
            provider.queue.put_nowait(RuntimeError("provider bug"))
            await wait_for(lambda: "provider bug" in (source.status.error or ""))
            provider.queue.put_nowait([TargetSpec("127.0.0.1", 8002)])  # after the 1 s restart
            await wait_for(lambda: keys(source) == ["127.0.0.1:8002"], 3)
            assert source.status.state == "ok" and source.status.error is None

    asyncio.run(scenario())
