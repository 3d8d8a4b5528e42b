"""Stores: the memory LRU bounded by bytes, the Redis codec, the shared purge log, coalescing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from forecourt.plugins.proxy_cache.coalesce import Coalescer
from forecourt.plugins.proxy_cache.purge import RING_SLOTS, PurgeLog
from forecourt.plugins.proxy_cache.stores import (
    CachedResponse,
    MemoryStore,
    RedisStore,
    VaryIndex,
    decode_entry,
    encode_entry,
)
from forecourt.state import RedisSettings
from tests.support.redis_server import running_redis


def response(body: bytes = b"x" * 100) -> CachedResponse:
    return CachedResponse(200, ((b"Content-Type", b"text/plain"),), body, time.time(), 60.0)


# ---------------------------------------------------------------------- memory
def test_memory_store_is_an_lru_bounded_by_bytes() -> None:
    entry = response()
    store = MemoryStore(max_bytes=entry.size * 3 + 3 * 10)
    for key in ("k1", "k2", "k3"):
        store.set(key, entry, 60)
    assert len(store) == 3
    assert store.get("k1") is entry  # k1 is now the most recently used
    store.set("k4", entry, 60)
    assert store.get("k2") is None  # the least recently used went first
    assert {k for k in ("k1", "k3", "k4") if store.get(k) is not None} == {"k1", "k3", "k4"}
    assert store.used <= store.max_bytes
    assert store.evictions == 1
    store.set("big", response(b"y" * store.max_bytes), 60)  # larger than the whole store: not kept
    assert store.get("big") is None and len(store) == 3


def test_memory_store_expiry_and_replacement() -> None:
    store = MemoryStore(max_bytes=1 << 20)
    store.set("k", response(), 0.05)
    assert store.get("k") is not None
    time.sleep(0.06)
    assert store.get("k") is None
    assert store.used == 0
    store.set("k", response(b"a"), 60)
    store.set("k", response(b"bb"), 60)
    only = store.get("k")
    assert isinstance(only, CachedResponse) and only.body == b"bb"
    assert store.used == only.size + 1


def test_memory_store_remove_takes_the_variants_along() -> None:
    store = MemoryStore(max_bytes=1 << 20)
    store.set("p", VaryIndex((b"accept",), time.time()), 60)
    store.set("p.v1", response(), 60)
    store.set("p.v2", response(), 60)
    store.set("q", response(), 60)
    assert store.remove("p")
    assert len(store) == 1 and store.get("q") is not None
    assert not store.remove("p")


def test_memory_stores_are_shared_by_gateway_and_name() -> None:
    a = MemoryStore.acquire("gw-test", "dict", 1 << 20, None)
    b = MemoryStore.acquire("gw-test", "dict", 2 << 20, None)
    c = MemoryStore.acquire("gw-test", "other", 1 << 20, None)
    assert a is b and a is not c
    assert a.max_bytes == 2 << 20  # resized by the config acquiring it last
    assert set(MemoryStore.of_gateway("gw-test")) == {a, c}
    for store in (a, b, c):
        asyncio.run(store.close())
    assert MemoryStore.of_gateway("gw-test") == []


# ---------------------------------------------------------------------- purge log
def test_purge_log_reaches_another_worker(tmp_path: Path) -> None:
    # Two logs over one file stand for two worker processes.
    here, there = PurgeLog(tmp_path / "log"), PurgeLog(tmp_path / "log")
    ours, theirs = MemoryStore(1 << 20, here), MemoryStore(1 << 20, there)
    for store in (ours, theirs):
        for key in ("a", "b", "c"):
            store.set(key, response(), 60)
    assert asyncio.run(ours.delete("a"))
    assert theirs.get("a") is None and theirs.get("b") is not None
    asyncio.run(ours.purge())
    assert theirs.get("b") is None and theirs.get("c") is None
    theirs.set("d", response(), 60)
    assert theirs.get("d") is not None  # entries stored after the purge stay
    assert ours.get("b") is None


def test_purge_log_overflow_purges_everything(tmp_path: Path) -> None:
    writer, reader = PurgeLog(tmp_path / "log"), PurgeLog(tmp_path / "log")
    store = MemoryStore(1 << 20, reader)
    store.set("keep", response(), 60)
    for index in range(RING_SLOTS + 1):
        writer.append(f"k{index}")
    assert store.get("keep") is None  # too many purges missed: everything goes, which is safe
    generation, keys = reader.since(writer.generation - 2)
    assert keys == [f"k{RING_SLOTS - 1}", f"k{RING_SLOTS}"]
    assert generation == writer.generation


def test_purge_log_file_is_reused(tmp_path: Path) -> None:
    first = PurgeLog(tmp_path / "log")
    first.append("x")
    assert PurgeLog(tmp_path / "log").generation == 1
    assert PurgeLog.for_gateway(None, "gw") is None
    assert PurgeLog.for_gateway(tmp_path, "gw") is PurgeLog.for_gateway(tmp_path, "gw")


# ---------------------------------------------------------------------- codec and redis
def test_codec_round_trip() -> None:
    entry = CachedResponse(
        404,
        ((b"Content-Type", b"application/json"), (b"X-B", b"\xe9")),
        b"\x00\xffbody",
        1.5,
        30.0,
        stale_if_error=5.0,
    )
    assert decode_entry(encode_entry(entry)) == entry
    index = VaryIndex((b"accept",), 2.0)
    assert decode_entry(encode_entry(index)) == index
    for bad in (b"", b"FPC1", b"XXXX\x00\x00\x00\x00", b"FPC1\x02\x00\x00\x00{}"):
        with pytest.raises(ValueError):
            decode_entry(bad)


def test_redis_store(tmp_path: Path) -> None:
    with running_redis(tmp_path) as server:

        async def scenario() -> None:
            store = RedisStore.acquire(RedisSettings(host="127.0.0.1", port=server.port, timeout=1), "gw")
            other = RedisStore.acquire(RedisSettings(host="127.0.0.1", port=server.port, timeout=1), "gw2")
            entry = response()
            await store.set("k", entry, 60)
            await store.set("p", VaryIndex((b"accept",), 1.0), 60)
            await store.set("p.v1", entry, 60)
            await other.set("k", entry, 60)
            assert await store.get("k") == entry
            assert await store.inspect("p") == VaryIndex((b"accept",), 1.0)
            assert await store.delete("p")
            assert await store.get("p.v1") is None  # variants go with their primary key
            assert not await store.delete("p")
            await store.purge()
            assert await store.get("k") is None
            assert await other.get("k") == entry  # another gateway's entries are not touched
            await store.set("short", entry, 0.05)
            await asyncio.sleep(0.1)
            assert await store.get("short") is None
            await store.close()
            await other.close()

        asyncio.run(scenario())


def test_redis_store_down_is_a_miss() -> None:
    async def scenario() -> None:
        store = RedisStore.acquire(RedisSettings(host="127.0.0.1", port=1, timeout=0.2), "gw")
        assert await store.get("k") is None
        await store.set("k", response(), 60)  # logged, not raised
        await store.close()

    asyncio.run(scenario())


# ---------------------------------------------------------------------- coalescing
def test_coalescer_one_leader_per_key() -> None:
    async def scenario() -> None:
        coalescer = Coalescer()
        flight, leader = coalescer.join("k")
        assert leader
        same, second = coalescer.join("k")
        assert same is flight and not second
        assert coalescer.join("other")[1]
        waiter = asyncio.create_task(same.wait(1.0))
        await asyncio.sleep(0)
        flight.release()
        assert await waiter is True
        flight.release()  # idempotent
        assert coalescer.join("k")[1]  # a released key gets a new leader

    asyncio.run(scenario())


def test_coalescer_wait_times_out() -> None:
    async def scenario() -> None:
        flight, _ = Coalescer().join("k")
        started = time.monotonic()
        assert await flight.wait(0.05) is False
        assert time.monotonic() - started < 0.5
        assert not flight.released

    asyncio.run(scenario())
