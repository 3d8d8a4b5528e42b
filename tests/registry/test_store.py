"""The store: leases on a fake clock, status precedence, delta retention, persistence and its errors."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import orjson
import pytest

from forecourt.registry.model import InstanceInfo, Status
from forecourt.registry.store import Persister, RegistryDataError, RegistryStore, load_store, write_atomic


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def info(instance_id: str = "o-1", app: str = "ORDERS", **kw: object) -> InstanceInfo:
    return InstanceInfo(instance_id=instance_id, app=app, host_name="h", ip_addr="10.0.0.1", **kw)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> RegistryStore:
    return RegistryStore(lease_duration=90, clock=clock)


def test_leases_expire_after_exactly_their_duration(store: RegistryStore, clock: Clock) -> None:
    store.register(info("default"))
    store.register(info("short", duration=10))
    clock.now += 10.5
    assert [r.info.instance_id for r in store.evict_expired()] == ["short"]
    clock.now += 79
    assert store.renew("ORDERS", "default")
    clock.now += 89
    assert store.evict_expired() == []
    clock.now += 2
    assert [r.info.instance_id for r in store.evict_expired()] == ["default"]
    assert len(store) == 0


@pytest.mark.parametrize(
    ("reported", "health_down", "override", "expected"),
    [
        (Status.UP, False, Status.UNKNOWN, Status.UP),
        (Status.UP, False, Status.OUT_OF_SERVICE, Status.OUT_OF_SERVICE),
        (Status.UP, True, Status.OUT_OF_SERVICE, Status.DOWN),
        (Status.UP, True, Status.UP, Status.DOWN),
        (Status.STARTING, False, Status.UP, Status.STARTING),
        (Status.DOWN, False, Status.UP, Status.DOWN),
        (Status.OUT_OF_SERVICE, False, Status.UP, Status.UP),
    ],
)
def test_status_precedence(
    store: RegistryStore, reported: Status, health_down: bool, override: Status, expected: Status
) -> None:
    reg = store.register(info(status=reported))
    reg.health_down = health_down
    reg.override = override
    assert reg.effective_status is expected


def test_registration_with_an_override_and_cancel_drops_it(store: RegistryStore) -> None:
    store.register(info(overridden_status=Status.OUT_OF_SERVICE))
    assert store.get("orders", "o-1").effective_status is Status.OUT_OF_SERVICE  # type: ignore[union-attr]
    store.cancel("ORDERS", "o-1")
    store.register(info())
    assert store.get("ORDERS", "o-1").effective_status is Status.UP  # type: ignore[union-attr]


def test_an_older_registration_does_not_replace_a_newer_one(store: RegistryStore) -> None:
    store.register(info(port=2, last_dirty_timestamp=200))
    store.register(info(port=1, last_dirty_timestamp=100))
    assert store.get("ORDERS", "o-1").info.port == 2  # type: ignore[union-attr]


def test_delta_keeps_changes_for_the_retention_time(clock: Clock) -> None:
    store = RegistryStore(delta_retention=180, clock=clock)
    store.register(info("a"))
    clock.now += 100
    store.register(info("b"))
    store.register(info("b", port=9))
    assert [[r.info.instance_id for r in regs] for _, regs in store.delta()] == [["a", "b"]]
    assert store.delta()[0][1][1].info.port == 9  # the latest state of b
    clock.now += 100
    assert [r.info.instance_id for _, regs in store.delta() for r in regs] == ["b"]
    clock.now += 100
    assert store.delta() == []


def test_health_verdicts_change_the_version_only_when_visible(store: RegistryStore) -> None:
    store.register(info())
    version = store.version
    assert store.set_health("ORDERS", "o-1", down=True)
    assert store.version == version + 1
    assert store.hashcode() == "DOWN_1_"
    assert not store.set_health("ORDERS", "o-1", down=True)
    assert store.set_health("ORDERS", "o-1", down=False)
    assert store.hashcode() == "UP_1_"


# ---------------------------------------------------------------------------------------- persistence
def test_persistence_round_trip_gives_fresh_leases(tmp_path: Path, clock: Clock) -> None:
    store = RegistryStore(clock=clock)
    store.register(info("a", duration=5, metadata={"zone": "eu"}))
    store.register(info("b", app="BILLING"))
    store.set_override("ORDERS", "a", Status.OUT_OF_SERVICE)
    path = tmp_path / "registry.json"
    write_atomic(path, store.to_document())

    clock.now += 1000  # long after the leases ran out
    loaded = load_store(path, clock=clock)
    assert [(reg.info.app, reg.info.instance_id) for reg in loaded.registrations()] == [
        ("BILLING", "b"),
        ("ORDERS", "a"),
    ]
    a = loaded.get("ORDERS", "a")
    assert a is not None
    assert (a.effective_status, a.duration, a.info.metadata) == (Status.OUT_OF_SERVICE, 5, {"zone": "eu"})
    assert loaded.evict_expired() == []  # a restart does not evict anyone
    assert loaded.version > store.version


def test_a_missing_file_is_an_empty_registry(tmp_path: Path) -> None:
    assert len(load_store(tmp_path / "new.json")) == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"   \n", "is empty"),
        (b'{"format": "forecourt-registry/1", "instances": [', "not valid JSON"),
        (b"[1, 2]", "is not a forecourt registry data file"),
        (b'{"format": "something-else"}', "is not a forecourt registry data file"),
        (b'{"format": "forecourt-registry/1", "instances": {}}', '"instances" must be a list'),
        (b'{"format": "forecourt-registry/1", "version": "x", "instances": []}', '"version"'),
        (b'{"format": "forecourt-registry/1", "instances": [7]}', r"instances\[0\]: expected an object"),
        (
            b'{"format": "forecourt-registry/1", "instances": [{"instance": {"app": "A", "instanceId": "x",'
            b' "port": {"$": "eighty"}}}]}',
            r"instances\[0\]: port",
        ),
        (
            b'{"format": "forecourt-registry/1", "instances": [{"instance": {"hostName": "h"}}]}',
            r"instances\[0\]: the instance has no app name",
        ),
    ],
)
def test_corrupt_files_are_clear_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "registry.json"
    path.write_bytes(content)
    with pytest.raises(RegistryDataError, match=message) as caught:
        load_store(path)
    assert str(path) in str(caught.value)


def test_unusable_paths_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(RegistryDataError, match="does not exist"):
        load_store(tmp_path / "no" / "such" / "dir" / "registry.json")
    with pytest.raises(RegistryDataError, match="cannot read"):
        load_store(tmp_path)  # a directory


def test_write_atomic_replaces_whole_files_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    write_atomic(path, b"one")
    write_atomic(path, b"two")
    assert path.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["registry.json"]


def test_persister_groups_concurrent_commits(tmp_path: Path) -> None:
    store = RegistryStore()
    path = tmp_path / "registry.json"
    persister = Persister(path, store.to_document)

    async def burst() -> None:
        async def one(n: int) -> None:
            store.register(info(f"i-{n}"))
            await persister.commit()

        await asyncio.gather(*(one(n) for n in range(200)))

    asyncio.run(burst())
    assert persister.writes < 20
    saved = orjson.loads(path.read_bytes())
    assert len(saved["instances"]) == 200


def test_persister_reports_write_failures(tmp_path: Path) -> None:
    store = RegistryStore()
    persister = Persister(tmp_path / "gone" / "registry.json", store.to_document)

    async def attempt() -> None:
        await persister.commit()

    with pytest.raises(OSError):
        asyncio.run(attempt())
