"""Module-scoped gateways and upstreams, so table-driven wire tests share one process each."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.gateway import GatewayProcess


@pytest.fixture(scope="module")
def module_gateway_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., GatewayProcess]]:
    """Like `gateway_factory`, but the gateways live as long as the test module."""
    started: list[GatewayProcess] = []

    def make(config: dict[str, Any] | str, *args: str) -> GatewayProcess:
        workdir = tmp_path_factory.mktemp("gw")
        gateway = GatewayProcess(config, workdir, *args).start()
        started.append(gateway)
        return gateway

    yield make
    for gateway in started:
        gateway.stop()
