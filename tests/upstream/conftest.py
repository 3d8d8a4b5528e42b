"""Fixtures for the upstream tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.dnsmasq import DnsServer, run_dnsmasq


@pytest.fixture
def dnsmasq(tmp_path: Path) -> Iterator[DnsServer]:
    """A real dnsmasq on 127.0.0.1 serving svc.test (two A records) and single.test, TTL 1 s."""
    with run_dnsmasq(tmp_path) as server:
        if server is None:
            pytest.fail("dnsmasq is not installed: `make test` installs it (scripts/install-system-deps.sh)")
        yield server
