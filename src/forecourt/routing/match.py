"""The router's answer: which route matched and what the match captured."""

from __future__ import annotations

from typing import Any

from forecourt.routing.spec import RouteSpec

__all__ = ["EMPTY_CAPTURES", "RouteMatch"]

#: Shared by every match without regex captures. Never mutate it.
EMPTY_CAPTURES: dict[str, str] = {}


class RouteMatch:
    """A matched route. Read-only by contract: prefix-route matches are built once per route and
    shared by every request that hits them, which keeps `resolve` free of allocations.

    - `uri_captures`: Kong's `uri_captures` — `"0"` the whole regex match, `"1"`... the numbered
      groups, plus named groups by name; groups that did not participate are left out. The shared
      `EMPTY_CAPTURES` when the route matched without a capturing regex.
    - `matched_path`: the prefix that matched, or the regex's whole match; `""` when the route has
      no path condition.
    - `strip_len`: `request_path[strip_len:]` is Kong's "request postfix": the matched part when
      `strip_path` is on and a path matched, otherwise just the leading slash.
    - `https_required`: the route only allows HTTPS (or gRPCs) and the request came over plain
      HTTP. Kong routes such a request anyway and then answers 426 "Please use HTTPS protocol" (or
      the route's `https_redirect_status_code`); the caller does the same.
    """

    __slots__ = ("https_required", "matched_path", "payload", "spec", "strip_len", "uri_captures")

    def __init__(
        self,
        spec: RouteSpec,
        uri_captures: dict[str, str],
        matched_path: str,
        strip_len: int,
        https_required: bool = False,
    ) -> None:
        self.spec = spec
        self.payload: Any = spec.payload
        self.uri_captures = uri_captures
        self.matched_path = matched_path
        self.strip_len = strip_len
        self.https_required = https_required

    def __repr__(self) -> str:
        return (
            f"RouteMatch(route={self.spec.name!r}, matched_path={self.matched_path!r}, "
            f"uri_captures={self.uri_captures!r}, https_required={self.https_required})"
        )
