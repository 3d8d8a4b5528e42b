"""Fixtures and helpers for the discovery provider tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from forecourt.discovery import DiscoveredTargets
from tests.support.etcd import EtcdServer, run_etcd


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    """One etcd per test module (each test uses its own key prefix)."""
    with run_etcd(tmp_path_factory.mktemp("etcd")) as server:
        yield server


@pytest.fixture
def fresh_etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    """An etcd of this test's own, which the test may kill."""
    with run_etcd(tmp_path) as server:
        yield server


async def wait_for(condition: Callable[[], bool], within: float = 5.0) -> float:
    """Poll ``condition`` every 10 ms; the seconds it took to hold."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > within:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


def keys(source: DiscoveredTargets) -> list[str]:
    """The balancer's endpoints as sorted ``ip:port`` keys."""
    return sorted(ep.key for ep in source.endpoints)
