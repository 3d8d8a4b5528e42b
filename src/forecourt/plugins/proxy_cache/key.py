"""Cache keys, computed as Kong 3.x computes them.

    sha256_hex("<prefix>|<method>|<path>|<query part>|<headers part>")

* prefix: `<consumer id>:<route>` for an authenticated consumer, else `<route>`, else `default`
  (Kong uses the route's id; Forecourt's routes are named, so the route name stands in for it).
* path: the normalised request path without the query (lower-cased with `ignore_uri_case`).
* query part: `name=value` pairs joined by `:` — every parameter sorted by name, or only those of
  `vary_query_params` in their configured order; a repeated parameter's values are sorted and
  joined by `,`; a parameter without `=` is its bare name.
* headers part: the same over `vary_headers` (empty when unset); names match case-insensitively.

A response that carries `Vary` is stored under a *variant* key: the primary key plus the request's
values of the named headers, hashed again (`variant_key`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from urllib.parse import unquote_plus

__all__ = ["cache_key", "key_prefix", "parse_query", "variant_key", "vary_part"]

QueryArgs = dict[str, "str | bool | list[str]"]


def key_prefix(consumer_id: str | None, route: str | None) -> str:
    if consumer_id and route:
        return f"{consumer_id}:{route}"
    if route:
        return route
    return "default"


def parse_query(query: bytes) -> QueryArgs:
    """`?a=1&b&a=2` → {"a": ["1", "2"], "b": True} (Kong's `kong.request.get_query()`)."""
    args: QueryArgs = {}
    text = query.decode("latin-1").lstrip("?")
    if not text:
        return args
    for part in text.split("&"):
        if not part:
            continue
        raw_name, sep, raw_value = part.partition("=")
        name = unquote_plus(raw_name)
        if not name:
            continue
        value: str | bool = unquote_plus(raw_value) if sep else True
        current = args.get(name)
        if current is None:
            args[name] = value
        elif isinstance(current, list):
            current.append(_text(value))
        else:
            args[name] = [_text(current), _text(value)]
    return args


def _text(value: str | bool) -> str:
    # A bare `a` repeated with `a=1`: Lua's table.concat would fail on `true`; Kong 3.x keeps
    # the name alone, so a bare occurrence counts as an empty value here.
    return value if isinstance(value, str) else ""


def _pairs(args: QueryArgs, fields: Sequence[str]) -> str:
    parts: list[str] = []
    for name in fields:
        value = args.get(name)
        if value is None or value is False:
            continue
        if isinstance(value, list):
            parts.append(f"{name}={','.join(sorted(value))}")
        elif value is True:
            parts.append(name)
        else:
            parts.append(f"{name}={value}")
    return ":".join(parts)


def query_part(query: bytes, vary_query_params: Sequence[str] | None) -> str:
    args = parse_query(query)
    if not vary_query_params:
        return _pairs(args, sorted(args))
    return _pairs(args, vary_query_params)


def headers_part(headers: Sequence[tuple[bytes, bytes]], vary_headers: Sequence[str] | None) -> str:
    if not vary_headers:
        return ""
    found: dict[str, list[str]] = {}
    wanted = {name.lower().replace("_", "-"): name for name in vary_headers}
    for raw_name, raw_value in headers:
        lname = raw_name.decode("latin-1").lower()
        if lname in wanted:
            found.setdefault(lname, []).append(raw_value.decode("latin-1"))
    args: QueryArgs = {}
    for lname, values in found.items():
        args[wanted[lname]] = values[0] if len(values) == 1 else values
    return _pairs(args, vary_headers)


def cache_key(
    prefix: str,
    method: str,
    path: str,
    query: bytes,
    headers: Sequence[tuple[bytes, bytes]],
    vary_query_params: Sequence[str] | None,
    vary_headers: Sequence[str] | None,
) -> str:
    text = "|".join(
        (prefix, method, path, query_part(query, vary_query_params), headers_part(headers, vary_headers))
    )
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def vary_part(headers: Sequence[tuple[bytes, bytes]], names: Sequence[bytes]) -> bytes:
    """The request's values of the (lower-cased) `names`, in a canonical form."""
    values: dict[bytes, list[bytes]] = {name: [] for name in names}
    for name, value in headers:
        bucket = values.get(name.lower())
        if bucket is not None:
            bucket.append(b" ".join(value.split()))
    return b"\n".join(name + b":" + b",".join(values[name]) for name in names)


def variant_key(primary: str, headers: Sequence[tuple[bytes, bytes]], names: Sequence[bytes]) -> str:
    """Where the variant of `primary` for this request's `names` header values is stored."""
    digest = hashlib.sha256(primary.encode() + b"\n" + vary_part(headers, names)).hexdigest()
    return f"{primary}.{digest[:32]}"
