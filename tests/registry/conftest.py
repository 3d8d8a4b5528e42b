"""Fixtures for the registry tests."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.registry.support import ThreadRegistry


@pytest.fixture
def registry() -> Iterator[ThreadRegistry]:
    """The registry server in this process, memory only, evicting every 0.1 s."""
    server = ThreadRegistry(eviction_interval=0.1).start()
    yield server
    server.stop()


@pytest.fixture
def http(registry: ThreadRegistry) -> Iterator[httpx.Client]:
    """An HTTP client whose base URL is the registry's Eureka API."""
    with httpx.Client(base_url=registry.url.rstrip("/"), timeout=5) as client:
        yield client
