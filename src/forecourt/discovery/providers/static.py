"""The ``static`` provider: a fixed target list, pushed once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from forecourt.discovery.providers.base import DiscoverySink, TargetSpec

__all__ = ["StaticProvider"]


class StaticProvider:
    """Pushes ``targets`` once and then waits to be cancelled (the set never changes)."""

    kind = "static"

    def __init__(self, targets: Iterable[TargetSpec]) -> None:
        self.targets = tuple(targets)

    async def watch(self, sink: DiscoverySink) -> None:
        sink.push(self.targets)
        await asyncio.Event().wait()

    def __repr__(self) -> str:
        return f"<StaticProvider {len(self.targets)} targets>"
