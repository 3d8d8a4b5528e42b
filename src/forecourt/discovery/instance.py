"""What discovery yields, and the seam that yields it.

`Instance` is one address of a service as a discovery source knows it; `Provider` is anything that
can list a service's instances (the Eureka registry here; DNS, etcd and static lists in
`forecourt.discovery.providers`). Both the client-side `Client` and the gateway's server-side
discovery consume providers through this one method.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["Instance", "Provider"]


@dataclass(frozen=True, slots=True)
class Instance:
    """One instance of a service.

    `status` uses Eureka's vocabulary (`UP`, `DOWN`, `STARTING`, `OUT_OF_SERVICE`, `UNKNOWN`);
    sources without a notion of status report `UP`. Only `UP` instances receive traffic.
    Equality and hashing use the address, the id and the status, not the metadata.
    """

    host: str
    port: int
    secure: bool = False
    status: str = "UP"
    metadata: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)
    instance_id: str = ""

    @property
    def healthy(self) -> bool:
        return self.status == "UP"

    @property
    def address(self) -> str:
        """`host:port`, with an IPv6 literal bracketed."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The instance's base URL, e.g. `http://10.0.0.7:8080`."""
        return f"{'https' if self.secure else 'http'}://{self.address}"

    def __str__(self) -> str:
        return f"{self.address} {self.status}"


class Provider(Protocol):
    """A source of instances. `fetch` returns every instance it knows of `app`, whatever their
    status (callers filter), an empty list for an unknown app, and raises for a source it cannot
    reach or understand."""

    async def fetch(self, app: str) -> list[Instance]: ...
