"""Request path normalisation: one canonical spelling per path, before any route sees it.

Routing and the upstream request both use the normalised path, so a request cannot reach a route
it does not match by spelling the path differently (`/api/orders/../admin`, `/api//admin`,
`/api/%2e%2e/admin`, `/api/.%2E/admin` all become `/api/admin`).

Steps, in this order (Kong's `kong.tools.uri.normalize` does the same, except where noted):

1. Reject what cannot be routed safely: a path not starting with `/`, a malformed `%` escape, and
   any byte outside printable ASCII (control bytes, NUL, raw spaces, non-ASCII; the server hands us
   the raw target decoded as latin-1, so non-ASCII bytes show up as non-ASCII characters).
2. Percent-decode only unreserved characters (ALPHA DIGIT `-` `.` `_` `~`); every other escape is
   kept, with its hex digits upper-cased. Reserved characters, `%2F` above all, are never decoded:
   `/a%2Fb` is one segment, not two. (Kong also decodes "other" characters such as `%20`; we keep
   them encoded so the output never contains a byte step 1 would reject.)
3. Collapse duplicate slashes, then remove dot segments (RFC 3986 §5.2.4), both on the decoded
   text so `%2e%2e` is a `..` segment. Slashes merge before dots resolve, as nginx and Kong do:
   `/a//../b` is `/b`.
4. `..` above the root is clamped at `/` (RFC 3986 behaviour, also Kong's), not rejected:
   `/../../etc` is `/etc`. Rejecting would only turn a harmless request into an error, since the
   clamped path is what any RFC-conforming upstream would resolve it to anyway.
5. A trailing slash is kept (`/a/` stays `/a/`, `/a/b/..` becomes `/a/`), because Kong's upstream
   path rules distinguish `/a` from `/a/`.

This runs on every request, so the common case (no `%`, no `//`, no `/.`) is a handful of C-level
string scans and returns the input object itself.
"""

from __future__ import annotations

import string

from forecourt.routing.errors import InvalidPath

__all__ = ["normalize_path"]

_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")


def _build_escape_table() -> dict[str, str]:
    """Map every two-hex-digit escape body to its normal form; absent keys are malformed escapes."""
    hex_digits = "0123456789abcdefABCDEF"
    table: dict[str, str] = {}
    for hi in hex_digits:
        for lo in hex_digits:
            char = chr(int(hi + lo, 16))
            table[hi + lo] = char if char in _UNRESERVED else "%" + (hi + lo).upper()
    return table


_ESCAPES = _build_escape_table()


def normalize_path(raw: str) -> str:
    """Return the canonical form of a request path (no query string), or raise `InvalidPath`."""
    if not raw.startswith("/"):
        raise InvalidPath(f"path must start with '/': {raw[:64]!r}")
    # isprintable() is False for C0 controls, NUL and DEL; spaces are printable, so test them apart.
    if not (raw.isascii() and raw.isprintable()) or " " in raw:
        raise InvalidPath("path contains a control character, space or non-ASCII byte")
    if "%" not in raw and "//" not in raw and "/." not in raw:
        return raw
    return _remove_dot_segments(_decode_unreserved(raw) if "%" in raw else raw)


def _decode_unreserved(path: str) -> str:
    """Decode escapes of unreserved characters; upper-case the hex of all others."""
    pieces = path.split("%")
    out = [pieces[0]]
    for piece in pieces[1:]:
        replacement = _ESCAPES.get(piece[:2])
        if replacement is None:
            raise InvalidPath(f"malformed percent-escape in path: %{piece[:2]!r}")
        out.append(replacement)
        out.append(piece[2:])
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    """Merge slashes and resolve `.`/`..` segments of an absolute path, keeping a trailing slash."""
    segments = path.split("/")
    last = segments[-1]
    kept: list[str] = []
    for segment in segments[1:-1]:
        if segment == "..":
            if kept:
                kept.pop()
        elif segment and segment != ".":
            kept.append(segment)
    if last == "..":
        if kept:
            kept.pop()
    elif last and last != ".":
        kept.append(last)
        return "/" + "/".join(kept)
    # The path ends in a slash, `.` or `..`: RFC 3986 leaves a trailing slash in all three cases.
    return "/" + "/".join(kept) + "/" if kept else "/"
