"""The upstream request path: service path, route `strip_path` and `path_handling`, as Kong does.

Kong first takes the "request postfix": the request path after the matched part when `strip_path`
is on and a path matched, else the path without its leading slash (`RouteMatch.strip_len` marks
where it starts), and drops a leading `./` or `../` left by stripping (`sanitize_uri_postfix`).
Then (service path `base`, default `/`; request path `req`; postfix `post`):

`v0` (Kong 0.x/2.x/3.x; `get_upstream_uri_v0` in `kong/router/utils.lua`) joins them as segments:

- base ends with `/`, strip: `post` empty → `/` if base is `/`, base if req ends with `/`, else
  base without its final `/`; `post` starts with `/` → base[:-1] + post; else base + post.
- base ends with `/`, no strip: base + req[1:].
- base without final `/`, strip: `post` empty → base + `/` if req is longer than `/` and ends with
  `/`, else base; `post` starts with `/` → base + post; else base + `/` + post.
- base without final `/`, no strip: base if req is `/`, else base + req.

`v1` (Kong 1.x; the traditional router) treats base as a plain prefix: with strip, base + post
(dropping one slash when base ends `/` and post starts `/`); without, base + req[1:].

E.g. base `/s`: route `/tv0` strip v0, `/tv0req` → `/s/req`; v1 → `/sreq`; route `/fv0` no strip
v0, `/fv0req` → `/s/fv0req`; v1 → `/sfv1req` (Kong's own table). Kong 3.x's default router runs v0
even for v1 routes (v1 is deprecated); we honour v1 as the traditional router did.

Everything that depends only on the route and service is decided once in `make_upstream_path`;
the returned function does a couple of string operations per request.
"""

from __future__ import annotations

from collections.abc import Callable

from forecourt.routing.match import RouteMatch

__all__ = ["UpstreamPathBuilder", "make_upstream_path", "upstream_path"]

#: (normalised request path, its route match) -> upstream path
UpstreamPathBuilder = Callable[[str, RouteMatch], str]


def _postfix(request_path: str, strip_len: int) -> str:
    """Kong's request postfix, with a leading `./` or `../` (or a bare `.`/`..`) removed."""
    post = request_path[strip_len:]
    if post and post[0] == ".":
        if post in (".", ".."):
            return ""
        if post.startswith("./"):
            return post[2:]
        if post.startswith("../"):
            return post[3:]
    return post


def make_upstream_path(service_path: str | None, strip_path: bool, path_handling: str) -> UpstreamPathBuilder:
    """Pick the path-joining function for one route and service, once, at config compile time."""
    base = service_path or "/"
    if path_handling not in ("v0", "v1"):
        raise ValueError(f"path_handling must be 'v0' or 'v1', not {path_handling!r}")
    trimmed = base[:-1]

    if path_handling == "v1":
        if not strip_path:
            return lambda path, match: base + path[1:]

        def v1_strip(path: str, match: RouteMatch) -> str:
            post = _postfix(path, match.strip_len)
            if trimmed + "/" == base and post.startswith("/"):
                return trimmed + post
            return base + post

        return v1_strip

    if base.endswith("/"):
        if not strip_path:
            return lambda path, match: base + path[1:]

        def v0_slash_strip(path: str, match: RouteMatch) -> str:
            post = _postfix(path, match.strip_len)
            if not post:
                if base == "/":
                    return "/"
                return base if path.endswith("/") else trimmed
            if post[0] == "/":
                return trimmed + post
            return base + post

        return v0_slash_strip

    if not strip_path:
        return lambda path, match: base if path == "/" else base + path

    def v0_strip(path: str, match: RouteMatch) -> str:
        post = _postfix(path, match.strip_len)
        if not post:
            return base + "/" if len(path) > 1 and path.endswith("/") else base
        if post[0] == "/":
            return base + post
        return base + "/" + post

    return v0_strip


def upstream_path(service_path: str | None, request_path: str, match: RouteMatch) -> str:
    """One-off form of `make_upstream_path` (tests, admin tools); the proxy should precompute."""
    spec = match.spec
    return make_upstream_path(service_path, spec.strip_path, spec.path_handling)(request_path, match)
