"""What may be stored and for how long: Cache-Control directives and RFC 9111 rules.

Kong's `proxy-cache` reads `Cache-Control` only with `cache_control: true`. Forecourt keeps that
switch for freshness (max-age, s-maxage, Expires, request max-age/min-fresh/max-stale, no-cache),
and applies the rules that keep one client's response from another *always*, whatever the switch:
a response with `Cache-Control: private` or `no-store`, with `Set-Cookie`, or with `Vary: *` is
never stored (RFC 9111 §3, §5.2.2.3, §5.2.2.7, §4.1).
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "ERROR_STATUSES",
    "Directives",
    "MediaTypeMatcher",
    "Storable",
    "freshness",
    "parse_directives",
    "parse_media_type",
    "vary_names",
]

Directives = dict[str, str | None]
"""Cache-Control directives: lower-cased name → argument (None for a bare directive)."""

EMPTY: Directives = {}

ERROR_STATUSES = frozenset({500, 502, 503, 504})
"""Statuses for which `stale-if-error` lets a stale response answer (RFC 5861 §4)."""

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE = re.compile(rf"^\s*({_TOKEN})/({_TOKEN})\s*(;.*)?$")


def parse_directives(values: Iterable[bytes]) -> Directives:
    """`Cache-Control` header values → directives (later duplicates win, as in Kong)."""
    out: Directives = {}
    for value in values:
        for part in value.decode("latin-1").split(","):
            name, sep, argument = part.partition("=")
            name = name.strip().lower()
            if not name:
                continue
            arg = argument.strip()
            if len(arg) >= 2 and arg[0] == arg[-1] == '"':
                arg = arg[1:-1]
            out[name] = arg if sep else None
    return out


def seconds(directives: Directives, name: str) -> int | None:
    """A delta-seconds directive's value (None when absent or not a number)."""
    value = directives.get(name)
    if value is None:
        return None
    try:
        return max(int(value), 0)
    except ValueError:
        return None


def _http_date(value: bytes | None) -> float | None:
    if value is None:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value.decode("latin-1"))
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.timestamp()


def freshness(directives: Directives, expires: bytes | None, date: bytes | None, now: float) -> float:
    """Freshness lifetime in seconds (RFC 9111 §4.2.1): s-maxage, max-age, then Expires - Date.

    An unparsable `Expires` means "already expired" (§5.3), so the response is not stored.
    """
    for name in ("s-maxage", "max-age"):
        if name in directives:
            value = seconds(directives, name)
            return float(value) if value is not None else 0.0
    if expires is None:
        return 0.0
    expires_at = _http_date(expires)
    if expires_at is None:
        return 0.0
    origin_now = _http_date(date)
    return max(expires_at - (origin_now if origin_now is not None else now), 0.0)


def vary_names(values: Sequence[bytes]) -> tuple[bytes, ...] | None:
    """Lower-cased header names a response varies on, sorted; None for `Vary: *` (never storable)."""
    names: set[bytes] = set()
    for value in values:
        for part in value.split(b","):
            name = part.strip().lower()
            if name == b"*":
                return None
            if name:
                names.add(name)
    return tuple(sorted(names))


# ---------------------------------------------------------------------- media types
def parse_media_type(value: str) -> tuple[str, str, frozenset[tuple[str, str]]] | None:
    """`type/subtype; k=v` → (type, subtype, parameters), lower-cased; None when malformed."""
    match = _MEDIA_TYPE.match(value)
    if match is None:
        return None
    params: set[tuple[str, str]] = set()
    for part in (match.group(3) or "").split(";"):
        name, _, arg = part.partition("=")
        name = name.strip().lower()
        if not name:
            continue
        arg = arg.strip()
        if len(arg) >= 2 and arg[0] == arg[-1] == '"':
            arg = arg[1:-1]
        params.add((name, arg.lower() if name == "charset" else arg))
    return match.group(1).lower(), match.group(2).lower(), frozenset(params)


class MediaTypeMatcher:
    """Kong 3.x's content-type check: `type/subtype`, `type/*` or `*/*`, parameters equal as sets.

    So `application/json` does not match `application/json; charset=utf-8`: list both, as in Kong.
    Built once per config; answers repeated header values from a small memo.
    """

    __slots__ = ("_any", "_exact", "_memo", "_type_wild")

    def __init__(self, patterns: Iterable[str]) -> None:
        self._exact: set[tuple[str, str, frozenset[tuple[str, str]]]] = set()
        self._type_wild: set[tuple[str, frozenset[tuple[str, str]]]] = set()
        self._any: set[frozenset[tuple[str, str]]] = set()
        for pattern in patterns:
            parsed = parse_media_type(pattern)
            if parsed is None:
                raise ValueError(f"config.content_type: invalid media type {pattern!r}")
            kind, sub, params = parsed
            if kind == "*" and sub == "*":
                self._any.add(params)
            elif sub == "*":
                self._type_wild.add((kind, params))
            else:
                self._exact.add(parsed)
        self._memo: dict[bytes, bool] = {}

    def __call__(self, value: bytes | None) -> bool:
        if not value:
            return False
        verdict = self._memo.get(value)
        if verdict is None:
            parsed = parse_media_type(value.decode("latin-1"))
            if parsed is None:
                verdict = False
            else:
                kind, _, params = parsed
                verdict = parsed in self._exact or (kind, params) in self._type_wild or params in self._any
            if len(self._memo) >= 256:
                self._memo.clear()
            self._memo[value] = verdict
        return verdict


# ---------------------------------------------------------------------- storability
@dataclass(frozen=True, slots=True)
class Storable:
    """How a storable response is kept: freshness, stale-if-error window, storage time, Vary."""

    ttl: float
    stale_if_error: float
    storage_ttl: float
    vary: tuple[bytes, ...]
    age: float  # the upstream's own `Age`, already spent of the freshness lifetime


def _header_values(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [v for n, v in headers if n.lower() == name]


def storable(
    status: int,
    headers: Sequence[tuple[bytes, bytes]],
    *,
    statuses: frozenset[int],
    content_type: MediaTypeMatcher,
    cache_control: bool,
    cache_ttl: int,
    storage_ttl: int | None,
    stale_if_error: int,
    now: float,
) -> Storable | None:
    """The storage decision for an upstream response, or None when it must not be stored."""
    if status not in statuses:
        return None
    types = _header_values(headers, b"content-type")
    if len(types) != 1 or not content_type(types[0]):
        return None
    if _header_values(headers, b"set-cookie"):
        return None
    vary = vary_names(_header_values(headers, b"vary"))
    if vary is None:
        return None
    cc = parse_directives(_header_values(headers, b"cache-control"))
    if "private" in cc or "no-store" in cc:
        return None
    age_values = _header_values(headers, b"age")
    age = 0.0
    if age_values and age_values[-1].strip().isdigit():
        age = float(int(age_values[-1]))
    if cache_control:
        if "no-cache" in cc:
            return None
        expires = _header_values(headers, b"expires")
        date = _header_values(headers, b"date")
        lifetime = freshness(cc, expires[-1] if expires else None, date[-1] if date else None, now)
        if lifetime - age <= 0:
            return None
        ttl = lifetime
        window = seconds(cc, "stale-if-error")
        stale = float(window) if window is not None else float(stale_if_error)
    else:
        ttl = float(cache_ttl)
        age = 0.0  # Kong's fixed cache_ttl counts from when the gateway stored the response
        stale = float(stale_if_error)
    # Kong keeps entries `storage_ttl` seconds (else as long as they are fresh); a stale-if-error
    # window needs them kept until it closes.
    keep = float(storage_ttl) if storage_ttl else ttl
    if stale:
        keep = max(keep, ttl + stale)
    keep -= age
    if keep <= 0:
        return None
    return Storable(ttl=ttl, stale_if_error=stale, storage_ttl=keep, vary=vary, age=age)
