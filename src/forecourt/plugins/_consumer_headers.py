"""Kong's `set_consumer` for the authentication plugins: record who the request belongs to and tell
the upstream with Kong's consumer headers.

The headers a client sent under these names are always removed first (in one pass over the
request headers), so an upstream never sees a spoofed `X-Consumer-Username`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from forecourt.pipeline import Consumer, Context, Credential

CONSUMER_ID = b"X-Consumer-ID"
CONSUMER_CUSTOM_ID = b"X-Consumer-Custom-ID"
CONSUMER_USERNAME = b"X-Consumer-Username"
CREDENTIAL_IDENTIFIER = b"X-Credential-Identifier"
ANONYMOUS = b"X-Anonymous-Consumer"

_ALL = (CONSUMER_ID, CONSUMER_CUSTOM_ID, CONSUMER_USERNAME, CREDENTIAL_IDENTIFIER, ANONYMOUS)
_MANAGED = frozenset(name.lower() for name in _ALL)
_ANONYMOUS_PAIR = (ANONYMOUS, b"true")

HeaderPairs = tuple[tuple[bytes, bytes], ...]


def consumer_headers(consumer: Consumer, identifier: str | None) -> HeaderPairs:
    """The upstream headers for `consumer`, authenticated by a credential named `identifier` (None:
    the anonymous consumer). Built once per credential when a plugin is created."""
    pairs = [(CONSUMER_ID, consumer.id.encode())]
    if consumer.custom_id:
        pairs.append((CONSUMER_CUSTOM_ID, consumer.custom_id.encode()))
    if consumer.username:
        pairs.append((CONSUMER_USERNAME, consumer.username.encode()))
    pairs.append((CREDENTIAL_IDENTIFIER, identifier.encode()) if identifier is not None else _ANONYMOUS_PAIR)
    return tuple(pairs)


def authenticate(
    ctx: Context, consumer: Consumer, credential: Credential | None, headers: HeaderPairs
) -> None:
    """Set `ctx.consumer`/`ctx.credential` and replace the consumer headers with `headers`."""
    ctx.consumer = consumer
    ctx.credential = credential
    req = ctx.req
    kept = [pair for pair in req.headers if pair[0].lower() not in _MANAGED]
    kept.extend(headers)
    req.headers = kept
