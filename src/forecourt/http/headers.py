"""Header rules shared by both sides of the proxy.

Hop-by-hop headers (RFC 9110 §7.6.1) describe one connection, never the message, so the proxy drops
them in both directions, together with any header the `Connection` header names.
"""

from __future__ import annotations

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
