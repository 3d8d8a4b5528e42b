"""Counters in a real redis-server: atomic check-and-count, batching, NOSCRIPT, outage, recovery."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from forecourt.state import RedisCounters, RedisSettings, StoreUnavailable, Usage, Window
from tests.support.redis_server import RedisServer, running_redis


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


def settings_for(server: RedisServer, timeout: float = 1.0) -> RedisSettings:
    return RedisSettings(host="127.0.0.1", port=server.port, timeout=timeout)


def hour_window(limit: int) -> Window:
    now = int(time.time())
    start = now - now % 3600
    return Window("hour", start, start + 3600, limit)


def test_take_counts_atomically_and_sets_expiry(server: RedisServer) -> None:
    window = hour_window(2)

    async def scenario() -> list[Usage]:
        store = RedisCounters(settings_for(server))
        try:
            return [await store.take("k", [window]) for _ in range(3)]
        finally:
            await store.aclose()

    assert asyncio.run(scenario()) == [Usage(True, (1,)), Usage(True, (2,)), Usage(False, (2,))]
    client = redis.Redis(port=server.port)
    key = f"forecourt:ratelimit:{{k}}:hour:{window.start}"
    assert client.get(key) == b"2"
    assert 0 < client.ttl(key) <= window.end - int(time.time()) + 1
    client.close()


def test_a_refused_take_counts_in_no_window(server: RedisServer) -> None:
    now = int(time.time())
    minute = Window("minute", now - now % 60, now - now % 60 + 60, 10)
    hour = hour_window(1)

    async def scenario() -> list[Usage]:
        store = RedisCounters(settings_for(server))
        try:
            return [await store.take("k", [minute, hour]) for _ in range(2)]
        finally:
            await store.aclose()

    assert asyncio.run(scenario()) == [Usage(True, (1, 1)), Usage(False, (1, 1))]


def test_concurrent_takes_from_two_clients_are_exact_and_batched(server: RedisServer) -> None:
    """500 takes at once through two independent stores (two "nodes"), limit 50: exactly 50."""
    window = hour_window(50)

    async def scenario() -> tuple[int, int]:
        one, two = RedisCounters(settings_for(server)), RedisCounters(settings_for(server))
        try:
            takes = [(one if i % 2 else two).take("hot", [window]) for i in range(500)]
            results = await asyncio.gather(*takes)
            return sum(u.allowed for u in results), one.batches + two.batches
        finally:
            await one.aclose()
            await two.aclose()

    allowed, batches = asyncio.run(scenario())
    assert allowed == 50
    assert batches <= 10  # 500 takes made in one loop iteration leave in a few commands


def test_a_flushed_script_cache_is_refilled(server: RedisServer) -> None:
    window = hour_window(100)
    client = redis.Redis(port=server.port)

    async def scenario() -> list[int]:
        store = RedisCounters(settings_for(server))
        try:
            first = await store.take("k", [window])
            client.script_flush()
            second = await store.take("k", [window])
            return [first.counts[0], second.counts[0]]
        finally:
            await store.aclose()

    assert asyncio.run(scenario()) == [1, 2]
    client.close()


def test_redis_down_raises_unavailable_and_recovery_needs_no_new_store(server: RedisServer) -> None:
    window = hour_window(100)

    async def scenario() -> None:
        store = RedisCounters(settings_for(server, timeout=0.5))
        try:
            assert (await store.take("k", [window])).counts == (1,)
            server.kill()
            with pytest.raises(StoreUnavailable):
                await store.take("k", [window])
            server.start()  # same port, empty (no persistence)
            assert (await store.take("k", [window])).counts == (1,)
            assert (await store.take("k", [window])).counts == (2,)
        finally:
            await store.aclose()

    asyncio.run(scenario())


def test_url_settings_and_shared_instances(server: RedisServer) -> None:
    settings = RedisSettings(url=server.url)

    async def scenario() -> int:
        store = RedisCounters.acquire(settings)
        assert RedisCounters.acquire(settings) is store
        await store.close()
        usage = await store.take("k", [hour_window(5)])
        await store.close()  # the last user closes the connections
        assert RedisCounters.acquire(settings) is not store
        await RedisCounters.acquire(settings).close()
        return usage.counts[0]

    assert asyncio.run(scenario()) == 1
