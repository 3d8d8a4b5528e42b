"""Routing: request path normalisation and Kong 3.x route matching, compiled per config snapshot.

Usage, from the server's point of view::

    path = normalize_path(raw_path)                # InvalidPath -> 400
    router = Router(specs)                         # InvalidRoutePattern -> config error
    match = router.resolve(method, host, path, headers, scheme, sni)   # None -> 404
    build = make_upstream_path(service.path, spec.strip_path, spec.path_handling)  # per route
    upstream = build(path, match)
"""

from forecourt.routing.errors import InvalidPath, InvalidRoutePattern
from forecourt.routing.match import EMPTY_CAPTURES, RouteMatch
from forecourt.routing.normalize import normalize_path
from forecourt.routing.patterns import compile_kong_regex, is_regex_path
from forecourt.routing.router import Router
from forecourt.routing.spec import RouteSpec
from forecourt.routing.upstream_path import UpstreamPathBuilder, make_upstream_path, upstream_path

__all__ = [
    "EMPTY_CAPTURES",
    "InvalidPath",
    "InvalidRoutePattern",
    "RouteMatch",
    "RouteSpec",
    "Router",
    "UpstreamPathBuilder",
    "compile_kong_regex",
    "is_regex_path",
    "make_upstream_path",
    "normalize_path",
    "upstream_path",
]
