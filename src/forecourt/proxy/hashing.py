"""Hash keys for consistent-hashing upstreams (Kong's `hash_on` / `hash_fallback`).

The key extractor is chosen once per upstream at plan build time; per request it reads one value.
When the primary source yields nothing (no such header, cookie, argument or capture) the fallback
source is tried, and with neither the balancer falls back to round-robin, as Kong does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

if TYPE_CHECKING:
    from forecourt.config import Upstream
    from forecourt.http.request import Request

HashKeyFn = Callable[["Request", str], "str | None"]


def _header(name: str) -> HashKeyFn:
    wanted = name.lower().encode("latin-1")

    def key(req: Request, client_ip: str) -> str | None:
        values = [v for n, v in req.headers if n.lower() == wanted]
        return b",".join(values).decode("latin-1") if values else None

    return key


def _cookie(name: str) -> HashKeyFn:
    wanted = name.encode("latin-1")

    def key(req: Request, client_ip: str) -> str | None:
        for n, v in req.headers:
            if n.lower() == b"cookie":
                for pair in v.split(b";"):
                    cname, sep, cvalue = pair.strip().partition(b"=")
                    if sep and cname == wanted:
                        return cvalue.decode("latin-1")
        return None

    return key


def _query_arg(name: str) -> HashKeyFn:
    def key(req: Request, client_ip: str) -> str | None:
        if not req.query:
            return None
        values = [
            v for k, v in parse_qsl(req.query[1:].decode("latin-1"), keep_blank_values=True) if k == name
        ]
        return ",".join(values) if values else None

    return key


def _uri_capture(name: str) -> HashKeyFn:
    def key(req: Request, client_ip: str) -> str | None:
        match = req.match
        return match.uri_captures.get(name) if match is not None else None

    return key


def _ip(req: Request, client_ip: str) -> str | None:
    return client_ip


def _path(req: Request, client_ip: str) -> str | None:
    return req.path


def _source(
    kind: str, header: str | None, cookie: str | None, arg: str | None, capture: str | None
) -> HashKeyFn | None:
    if kind == "ip":
        return _ip
    if kind == "path":
        return _path
    if kind == "header" and header:
        return _header(header)
    if kind == "cookie" and cookie:
        return _cookie(cookie)
    if kind == "query_arg" and arg:
        return _query_arg(arg)
    if kind == "uri_capture" and capture:
        return _uri_capture(capture)
    # "consumer" needs authentication plugins; until a consumer is known it yields no key.
    return None


def make_hash_key(upstream: Upstream) -> HashKeyFn | None:
    """The key extractor for `upstream`, or None when it does not hash."""
    if upstream.algorithm != "consistent-hashing" or upstream.hash_on == "none":
        return None
    primary = _source(
        upstream.hash_on,
        upstream.hash_on_header,
        upstream.hash_on_cookie,
        upstream.hash_on_query_arg,
        upstream.hash_on_uri_capture,
    )
    fallback = _source(
        upstream.hash_fallback,
        upstream.hash_fallback_header,
        None,
        upstream.hash_fallback_query_arg,
        upstream.hash_fallback_uri_capture,
    )
    if primary is None:
        return fallback
    if fallback is None:
        return primary
    first, second = primary, fallback

    def key(req: Request, client_ip: str) -> str | None:
        value = first(req, client_ip)
        return value if value is not None else second(req, client_ip)

    return key
