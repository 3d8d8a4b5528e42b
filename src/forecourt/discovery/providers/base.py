"""The provider seam: a provider watches one source and pushes whole target sets.

Like Traefik's providers, a provider never sends increments: every push is the complete set of
targets it currently knows, so the consumer can compare snapshots, drop unchanged ones and never
has to reconcile partial updates. A provider that cannot reach its source says so with ``fail``
and keeps trying; the consumer keeps serving the last pushed set meanwhile.

Exceptions: a provider maps its source's errors to :class:`DiscoveryError` (with ``raise ... from
exc``) and reports them through ``fail``; ``watch`` itself only ends by cancellation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["DiscoveryError", "DiscoveryProvider", "DiscoverySink", "TargetSpec", "format_error"]


@dataclass(frozen=True, slots=True, order=True)
class TargetSpec:
    """One discovered target: where to send requests, and how much of them.

    ``host`` is the name sent as ``Host`` (a DNS name, an instance's hostName, or an IP). When
    ``address`` is set it is the IP to dial and ``host`` is not resolved; otherwise ``host`` is
    resolved (and followed on its TTL) like a configured target's.
    """

    host: str
    port: int
    weight: int = 100
    address: str | None = None

    def __str__(self) -> str:
        where = (
            f"{self.host}:{self.port}" if self.address is None else f"{self.host}@{self.address}:{self.port}"
        )
        return where if self.weight == 100 else f"{where} (weight {self.weight})"


class DiscoveryError(Exception):
    """The provider's source could not be read (unreachable, bad answer, no such name)."""


class DiscoverySink(Protocol):
    """Where a provider delivers what it learns."""

    def push(self, targets: Sequence[TargetSpec]) -> None:
        """The complete current target set (possibly empty, possibly unchanged)."""
        ...

    def fail(self, error: BaseException | str) -> None:
        """The source could not be read just now; the last pushed set stays in use."""
        ...


@runtime_checkable
class DiscoveryProvider(Protocol):
    """Watches one source of targets; ``kind`` names it (``dns``, ``eureka``, ``etcd``, ``static``)."""

    kind: str

    async def watch(self, sink: DiscoverySink) -> None:
        """Push the first set as soon as it is known, then every change, until cancelled.

        Never returns on its own and never raises for source errors: it reports them with
        ``sink.fail`` and retries (with backoff).
        """
        ...


def format_error(error: BaseException | str) -> str:
    """A one-line description of ``error`` for logs and the health endpoint."""
    if isinstance(error, str):
        return error
    text = str(error)
    return text if text else type(error).__name__
