"""Header rules shared by both sides of the proxy.

Hop-by-hop headers (RFC 9110 §7.6.1) describe one connection, never the message, so the proxy drops
them in both directions, together with any header the `Connection` header names.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

HOP_BY_HOP: frozenset[bytes] = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

IDEMPOTENT_METHODS: frozenset[str] = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})


def connection_tokens(value: bytes) -> frozenset[bytes]:
    """Header names listed in a `Connection` header value, lowercased."""
    return frozenset(t.strip().lower() for t in value.split(b",") if t.strip())


# Kinds of request header. `Final` literals: compiled, a comparison with one is a C integer compare
# rather than a lookup of the name in the module's globals (the header loop does several per header).
FORWARDED: Final = 0
HOST: Final = 1
CONTENT_LENGTH: Final = 2
TRANSFER_ENCODING: Final = 3
EXPECT: Final = 4
CONNECTION: Final = 5
FORWARDED_FOR: Final = 6
DROPPED: Final = 7
# Header names as clients spell them → their kind, so the common names cost one lookup, not a
# lower() and a lookup. Bounded: names beyond the bound are classified every time.
REQUEST_HEADER_KINDS: dict[bytes, int] = {}
_REQUEST_HEADER_KINDS_MAX = 4096
# Request headers the proxy reads, drops or rebuilds (hop-by-hop ones, framing it sets itself, the
# forwarding headers); every other header is forwarded unchanged.
_SPECIAL_REQUEST_HEADERS: dict[bytes, int] = {
    **dict.fromkeys(
        (
            b"keep-alive",
            b"proxy-connection",
            b"proxy-authenticate",
            b"proxy-authorization",
            b"te",
            b"trailer",
            b"upgrade",
            b"via",
            b"x-forwarded-proto",
            b"x-forwarded-host",
            b"x-forwarded-port",
            b"x-forwarded-path",
            b"x-forwarded-prefix",
            b"x-real-ip",
        ),
        DROPPED,
    ),
    b"host": HOST,
    b"content-length": CONTENT_LENGTH,
    b"transfer-encoding": TRANSFER_ENCODING,
    b"expect": EXPECT,
    b"connection": CONNECTION,
    b"x-forwarded-for": FORWARDED_FOR,
}


def header_shape(name: bytes) -> int:
    """A non-empty name's length and first letter (case folded), as an index into a table made by
    `shape_marks`: a cheap first filter for code looking for a few names among many headers."""
    return ((len(name) & 63) << 5) | (name[0] & 31)


def shape_marks(names: Iterable[bytes]) -> bytes:
    """A table marking the shapes of `names`: `table[header_shape(n)]` is 0 for any name `n` that
    is none of them (case-insensitively), and 1 for them and for the few others of their shapes."""
    shapes = frozenset(header_shape(n) for n in names if n)
    return bytes(1 if i in shapes else 0 for i in range(2048))


# Shapes of the special names: a header whose shape is not marked is forwarded without hashing its
# name for a dict lookup (most of a request's headers; false positives just take the lookup).
_MAYBE_SPECIAL: Final = shape_marks(_SPECIAL_REQUEST_HEADERS)


def classify_request_header(name: bytes) -> int:
    """How the proxy treats request header `name`: `request_header_kind`, with most names decided
    by their shape alone. (An empty name, which llhttp never passes, is dropped.)"""
    if not name:
        return DROPPED
    if not _MAYBE_SPECIAL[header_shape(name)]:
        return FORWARDED
    kind = REQUEST_HEADER_KINDS.get(name)
    return kind if kind is not None else request_header_kind(name)


def request_header_kind(name: bytes) -> int:
    """How the proxy treats request header `name` (as spelled by the client); cached by spelling."""
    kind = _SPECIAL_REQUEST_HEADERS.get(name.lower(), FORWARDED)
    if len(REQUEST_HEADER_KINDS) < _REQUEST_HEADER_KINDS_MAX:
        REQUEST_HEADER_KINDS[name] = kind
    return kind
