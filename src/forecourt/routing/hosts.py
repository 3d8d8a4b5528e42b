"""Host conditions: exact names, `*.example.com`, `example.*`, each with an optional port.

Semantics follow Kong 3.x (`kong/router/compat.lua`): a leading wildcard is a suffix match, a
trailing wildcard a prefix match, and a route host with `:port` matches only requests whose Host
header names that port, while a route host without a port matches any port. Names are compared
case-insensitively (DNS names are), which Kong leaves to its clients.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from forecourt.routing.errors import InvalidRoutePattern

__all__ = ["HostMatcher", "split_host_port"]


def split_host_port(raw: str) -> tuple[str, int | None]:
    """Split a Host header (or route host) into a lower-cased name and an optional port.

    IPv6 literals keep their brackets (`[::1]:8000` → `("[::1]", 8000)`); a port that is not all
    digits leaves the whole value as the name, which then matches no sane route.
    """
    value = raw.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end != -1 and value[end + 1 : end + 2] == ":" and value[end + 2 :].isdigit():
            return value[: end + 1], int(value[end + 2 :])
        return value, None
    name, sep, port = value.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        return name, int(port)
    return value, None


@dataclass(frozen=True, slots=True)
class _Wildcard:
    """One wildcard host: `suffix` is `.example.com` for `*.example.com`, `prefix` `example.`."""

    text: str
    leading: bool
    port: int | None

    def matches(self, name: str, port: int | None) -> bool:
        if self.port is not None and self.port != port:
            return False
        if len(name) <= len(self.text):
            return False
        return name.endswith(self.text) if self.leading else name.startswith(self.text)


class HostMatcher:
    """All of one route's hosts, compiled for a set lookup in the common (exact) case."""

    __slots__ = ("_wildcards", "_with_port", "any_port", "has_wildcard", "needs_full_check")

    def __init__(self, hosts: Iterable[str], route_name: str) -> None:
        any_port: set[str] = set()
        with_port: set[tuple[str, int]] = set()
        wildcards: list[_Wildcard] = []
        for raw in hosts:
            name, port = split_host_port(raw)
            if port is not None and not 0 < port < 65536:
                raise InvalidRoutePattern(f"route {route_name!r}: invalid port in host {raw!r}")
            stars = name.count("*")
            if not name or stars > 1:
                raise InvalidRoutePattern(f"route {route_name!r}: invalid host {raw!r}")
            if stars == 0:
                if port is None:
                    any_port.add(name)
                else:
                    with_port.add((name, port))
            elif name.startswith("*.") and len(name) > 2:
                wildcards.append(_Wildcard(name[1:], True, port))
            elif name.endswith(".*") and len(name) > 2:
                wildcards.append(_Wildcard(name[:-1], False, port))
            else:
                raise InvalidRoutePattern(
                    f"route {route_name!r}: host {raw!r} may only have a wildcard as its leftmost "
                    "or rightmost label"
                )
        #: Exact names valid on any port: the common case, which the router tests inline.
        self.any_port = frozenset(any_port)
        self._with_port = frozenset(with_port)
        self._wildcards = tuple(wildcards)
        self.has_wildcard = bool(wildcards)
        self.needs_full_check = bool(with_port or wildcards)

    def matches(self, name: str, port: int | None) -> bool:
        """`name` and `port` come from `split_host_port` of the request's Host header."""
        if name in self.any_port:
            return True
        if port is not None and (name, port) in self._with_port:
            return True
        return any(wildcard.matches(name, port) for wildcard in self._wildcards)
