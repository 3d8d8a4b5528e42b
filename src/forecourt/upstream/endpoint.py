"""One address a balancer can send a request to.

An upstream *target* (``orders.internal:8080``, weight 100) may resolve to several addresses; each
address becomes one :class:`Endpoint`. Balancers hold endpoints, never targets, so a hostname with
three A records spreads its traffic over three endpoints, each carrying the target's weight (Kong's
rule for A records).

Endpoints are identified by :attr:`Endpoint.key` (``ip:port``). When the endpoint set is replaced
(a DNS refresh, a config reload of the same upstream), balancers keep the existing object for an
unchanged key, so its in-flight count, health and balancer bookkeeping survive, and a request that
started before the change releases the very object it acquired.
"""

from __future__ import annotations

__all__ = ["Endpoint", "format_hostport"]


def format_hostport(host: str, port: int) -> str:
    """``host:port``, with IPv6 literals bracketed so the result parses back unambiguously."""
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


class Endpoint:
    """A resolved upstream address plus the mutable per-address state balancers read.

    ``host`` is the target's name as configured: the proxy sends it as the ``Host`` header unless the
    route preserves the client's. ``ip`` is what the connection pool dials.

    ``active`` counts in-flight requests; balancers update it in ``acquire``/``release``.
    ``healthy`` is flipped by health checks; balancers never pick an unhealthy endpoint.

    Equality and hashing use :attr:`key` so that ``exclude`` sets and lookups work across the
    objects built by successive DNS resolutions of the same address.
    """

    __slots__ = ("active", "healthy", "host", "ip", "key", "label", "port", "weight")

    host: str
    ip: str
    port: int
    weight: int
    active: int
    healthy: bool
    key: str
    label: str

    def __init__(self, host: str, ip: str, port: int, weight: int = 100, *, healthy: bool = True) -> None:
        if weight < 0:
            raise ValueError(f"endpoint weight must be >= 0, got {weight}")
        if not 0 < port < 65536:
            raise ValueError(f"endpoint port must be 1..65535, got {port}")
        self.host = host
        self.ip = ip
        self.port = port
        self.weight = weight
        self.active = 0
        self.healthy = healthy
        self.key = format_hostport(ip, port)
        self.label = format_hostport(host, port)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Endpoint):
            return self.key == other.key
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        where = self.label if self.host == self.ip else f"{self.label} ({self.key})"
        state = "" if self.healthy else " unhealthy"
        return f"<Endpoint {where} weight={self.weight} active={self.active}{state}>"
