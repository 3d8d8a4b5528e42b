"""Header conditions, in Kong 3.x semantics.

A route's `headers` maps a name to values; the request matches a name when any of its values for
that header (all header lines count) equals one of the route's values case-insensitively, or
matches one of the route's `~*`-prefixed regexes (an unanchored, case-insensitive search). Every
name in the route must match.

Kong lower-cases both the header value and the regex text and then matches case-sensitively; we
compile the original regex with `re.IGNORECASE` instead, which is the intent without Kong's
accident of turning `\\D` into `\\d`. Route header names compare case-insensitively with `_`
standing for `-` (nginx's lookup does the same; it drops request headers spelled with `_`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from forecourt.routing.errors import InvalidRoutePattern

__all__ = ["HeaderCondition"]

_REGEX_MARK = "~*"


class HeaderCondition:
    """One header name of one route and the values that satisfy it."""

    __slots__ = ("exact", "name", "regexes")

    def __init__(self, name: str, values: Sequence[str], route_name: str) -> None:
        if not values:
            raise InvalidRoutePattern(f"route {route_name!r}: header {name!r} has no values")
        normalized = name.strip().lower().replace("_", "-")
        if normalized == "host":
            raise InvalidRoutePattern(f"route {route_name!r}: use 'hosts', not a 'host' header condition")
        self.name: bytes = normalized.encode("latin-1")
        exact: set[str] = set()
        regexes: list[re.Pattern[str]] = []
        for value in values:
            if value.startswith(_REGEX_MARK):
                try:
                    regexes.append(re.compile(value[len(_REGEX_MARK) :], re.IGNORECASE))
                except re.error as exc:
                    raise InvalidRoutePattern(
                        f"route {route_name!r}: invalid regex in header {name!r}: {value!r}: {exc}"
                    ) from exc
            else:
                exact.add(value.lower())
        self.exact = frozenset(exact)
        self.regexes = tuple(regexes)

    def matches(self, values: list[str] | None) -> bool:
        """`values` are the request's decoded values for this header name (None if absent)."""
        if not values:
            return False
        for value in values:
            if value.lower() in self.exact:
                return True
            for regex in self.regexes:
                if regex.search(value):
                    return True
        return False
