"""Shared fixtures: real upstreams and real gateway processes on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway import GatewayProcess
from tests.support.upstreams import DemoUpstream, RecordingUpstream


@pytest.fixture
def demo_upstream() -> Iterator[DemoUpstream]:
    upstream = DemoUpstream("upstream").start()
    yield upstream
    upstream.stop()


@pytest.fixture
def recording_upstream() -> Iterator[RecordingUpstream]:
    upstream = RecordingUpstream().start()
    yield upstream
    upstream.stop()


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    started: list[GatewayProcess] = []

    def make(config: dict[str, Any] | str, *args: str, tls: bool = False) -> GatewayProcess:
        workdir = tmp_path / f"gw{len(started)}"
        workdir.mkdir()
        gateway = GatewayProcess(config, workdir, *args, tls=tls).start()
        started.append(gateway)
        return gateway

    yield make
    for gateway in started:
        gateway.stop()


def single_service(port: int, **route: Any) -> dict[str, Any]:
    """A config with one service at 127.0.0.1:`port` and one route (default: prefix `/`)."""
    route.setdefault("paths", ["/"])
    route.setdefault("name", "r")
    service: dict[str, Any] = {"name": "svc", "url": f"http://127.0.0.1:{port}", "routes": [route]}
    return {"_format_version": "3.0", "services": [service]}
