"""Upstream path: Kong's strip_path x path_handling x trailing-slash behaviour."""

from __future__ import annotations

import pytest

from forecourt.routing import Router, RouteSpec, make_upstream_path, normalize_path, upstream_path

# service path, route path (None: the route matches on host only), request path, expected, strip
V0 = [
    # Kong's documented rows (Admin API reference, "path_handling")
    ("/s", "/fv0", "/fv0req", "/s/fv0req", False),
    ("/s", "/tv0", "/tv0req", "/s/req", True),
    ("/s", "/fv0/", "/fv0/req", "/s/fv0/req", False),
    ("/s", "/tv0/", "/tv0/req", "/s/req", True),
    ("/s", "/fv0", "/fv0", "/s/fv0", False),
    # get_upstream_uri_v0 in kong/router/utils.lua, branch by branch
    ("/", "/", "/", "/", True),
    ("/", "/", "/foo/bar", "/foo/bar", True),
    ("/", "/", "/foo/bar/", "/foo/bar/", True),
    ("/", "/foo/bar", "/foo/bar", "/", True),
    ("/", "/foo/bar", "/foo/bar/", "/", True),
    ("/", "/foo/bar/", "/foo/bar/", "/", True),
    ("/fee/bor", "/", "/", "/fee/bor", True),
    ("/fee/bor", "/", "/foo/bar", "/fee/bor/foo/bar", True),
    ("/fee/bor", "/", "/foo/bar/", "/fee/bor/foo/bar/", True),
    ("/fee/bor", "/foo/bar", "/foo/bar", "/fee/bor", True),
    ("/fee/bor", "/foo/bar", "/foo/bar/", "/fee/bor/", True),
    ("/fee/bor", "/foo/bar/", "/foo/bar/", "/fee/bor/", True),
    ("/fee/bor/", "/", "/", "/fee/bor/", True),
    ("/fee/bor/", "/", "/foo/bar", "/fee/bor/foo/bar", True),
    ("/fee/bor/", "/foo/bar", "/foo/bar", "/fee/bor", True),
    ("/fee/bor/", "/foo/bar", "/foo/bar/", "/fee/bor/", True),
    ("/fee/bor/", "/foo/bar/", "/foo/bar/", "/fee/bor/", True),
    ("/", "/foo/bar", "/foo/bars", "/s", True),
    ("/fee/bor", "/foo/bar", "/foo/bars", "/fee/bor/s", True),
    ("/fee/bor", "/foo/bar/", "/foo/bar/s", "/fee/bor/s", True),
    ("/fee/bor/", "/foo/bar", "/foo/bars", "/fee/bor/s", True),
    ("/", "/", "/", "/", False),
    ("/", "/", "/foo/bar", "/foo/bar", False),
    ("/", "/foo/bar", "/foo/bar/", "/foo/bar/", False),
    ("/fee/bor", "/", "/", "/fee/bor", False),
    ("/fee/bor", "/", "/foo/bar", "/fee/bor/foo/bar", False),
    ("/fee/bor", "/foo/bar", "/foo/bar/", "/fee/bor/foo/bar/", False),
    ("/fee/bor/", "/", "/", "/fee/bor/", False),
    ("/fee/bor/", "/foo/bar", "/foo/bar", "/fee/bor/foo/bar", False),
    (None, "/foo", "/foo/x", "/x", True),
    # no path condition: the postfix is the path without its leading slash
    ("/fee/bor", None, "/", "/fee/bor", True),
    ("/fee/bor", None, "/foo/bar", "/fee/bor/foo/bar", True),
    ("/fee/bor/", None, "/", "/fee/bor/", True),
    ("/fee/bor/", None, "/foo/bar/", "/fee/bor/foo/bar/", False),
    # a leading ../ left by stripping is dropped (sanitize_uri_postfix)
    ("/s", "/api", "/api../x", "/s/x", True),
    ("/s", "/api", "/api..", "/s", True),
]

V1 = [
    # Kong's documented rows
    ("/s", "/fv1", "/fv1req", "/sfv1req", False),
    ("/s", "/tv1", "/tv1req", "/sreq", True),
    ("/s", "/fv1/", "/fv1/req", "/sfv1/req", False),
    ("/s", "/tv1/", "/tv1/req", "/sreq", True),
    # Kong 1.x router spec (build_upstream_uri), the v1 behaviour
    ("/", "/", "/", "/", True),
    ("/", "/", "/foo/bar/", "/foo/bar/", True),
    ("/", "/foo/bar", "/foo/bar", "/", True),
    ("/", "/foo/bar", "/foo/bar/", "/", True),
    ("/fee/bor", "/", "/", "/fee/bor", True),
    ("/fee/bor", "/", "/foo/bar", "/fee/borfoo/bar", True),
    ("/fee/bor", "/foo/bar", "/foo/bar", "/fee/bor", True),
    ("/fee/bor", "/foo/bar", "/foo/bar/", "/fee/bor/", True),
    ("/fee/bor", "/foo/bar/", "/foo/bar/", "/fee/bor", True),
    ("/fee/bor/", "/", "/foo/bar", "/fee/bor/foo/bar", True),
    ("/fee/bor/", "/foo/bar", "/foo/bar/", "/fee/bor/", True),
    ("/fee/bor", "/foo/bar", "/foo/bars", "/fee/bors", True),
    ("/fee/bor/", "/foo/bar/", "/foo/bar/s", "/fee/bor/s", True),
    ("/", "/foo/bar", "/foo/bar/", "/foo/bar/", False),
    ("/fee/bor", "/", "/", "/fee/bor", False),
    ("/fee/bor", "/", "/foo/bar", "/fee/borfoo/bar", False),
    ("/fee/bor", "/foo/bar/", "/foo/bar/", "/fee/borfoo/bar/", False),
    ("/fee/bor/", "/foo/bar", "/foo/bars", "/fee/bor/foo/bars", False),
    ("/fee/bor", None, "/foo/bar", "/fee/borfoo/bar", True),
    ("/fee/bor/", None, "/foo/bar/", "/fee/bor/foo/bar/", True),
]


def _build(route_path: str | None, strip: bool, handling: str) -> Router:
    paths = () if route_path is None else (route_path,)
    return Router([RouteSpec("r", paths=paths, hosts=("h",), strip_path=strip, path_handling=handling)])


def _as_regex(route_path: str) -> str:
    """Kong's spec trick: the same path spelled as a regex must give the same answer."""
    return "~/[0]?" + route_path[1:]


@pytest.mark.parametrize(("handling", "row"), [("v0", row) for row in V0] + [("v1", row) for row in V1])
def test_upstream_path(handling: str, row: tuple[str | None, str | None, str, str, bool]) -> None:
    service_path, route_path, request, expected, strip = row
    path = normalize_path(request)
    variants = [route_path] if route_path is None else [route_path, _as_regex(route_path)]
    for variant in variants:
        match = _build(variant, strip, handling).resolve("GET", "h", path, ())
        assert match is not None
        assert upstream_path(service_path, path, match) == expected, variant
        assert make_upstream_path(service_path, strip, handling)(path, match) == expected


def test_unknown_path_handling() -> None:
    with pytest.raises(ValueError, match="path_handling"):
        make_upstream_path("/", True, "v2")
