"""Kong's `set_consumer` for the authentication plugins: record who the request belongs to and tell
the upstream with Kong's consumer headers.

The headers a client sent under these names are always removed first (in one pass over the
request headers), so an upstream never sees a spoofed `X-Consumer-Username`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from forecourt.http.headers import header_shape, shape_marks

if TYPE_CHECKING:
    from forecourt.pipeline import Consumer, Context, Credential
    from forecourt.pipeline.consumers import ConsumerIndex

CONSUMER_ID = b"X-Consumer-ID"
CONSUMER_CUSTOM_ID = b"X-Consumer-Custom-ID"
CONSUMER_USERNAME = b"X-Consumer-Username"
CREDENTIAL_IDENTIFIER = b"X-Credential-Identifier"
ANONYMOUS = b"X-Anonymous-Consumer"

_ALL = (CONSUMER_ID, CONSUMER_CUSTOM_ID, CONSUMER_USERNAME, CREDENTIAL_IDENTIFIER, ANONYMOUS)
_MANAGED = frozenset(name.lower() for name in _ALL)
_MANAGED_MARKS: Final = shape_marks(_MANAGED)
_ANONYMOUS_PAIR = (ANONYMOUS, b"true")

HeaderPairs = tuple[tuple[bytes, bytes], ...]


def anonymous_consumer(
    name: str | None, consumers: ConsumerIndex | None
) -> tuple[Consumer, HeaderPairs] | None:
    """An authentication plugin's `anonymous` consumer and its headers, resolved at config load
    (None when the plugin has no `anonymous`); a name that matches no consumer is a config error."""
    if name is None:
        return None
    found = consumers.find(name) if consumers is not None else None
    if found is None:
        raise ValueError(f'anonymous consumer "{name}" not found')
    return found, consumer_headers(found, None)


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


CONSUMER_HEADER_NAMES = _MANAGED
"""The lowercased names `authenticate` replaces, for callers that walk the headers anyway."""


def authenticate(
    ctx: Context,
    consumer: Consumer,
    credential: Credential | None,
    headers: HeaderPairs,
    *,
    spoofed: bool = True,
) -> None:
    """Set `ctx.consumer`/`ctx.credential` and replace the consumer headers with `headers`.

    `spoofed=False` is the caller's word that no request header is a consumer header (it already
    walked them, see `CONSUMER_HEADER_NAMES`), which saves a second pass.
    """
    ctx.consumer = consumer
    ctx.credential = credential
    req = ctx.req
    current = req.headers
    if spoofed:
        # Clients almost never send these names: look first (by shape, then name), copy only if so.
        for name, _ in current:
            if name and _MANAGED_MARKS[header_shape(name)] and name.lower() in _MANAGED:
                current = req.headers = [pair for pair in current if pair[0].lower() not in _MANAGED]
                break
    current.extend(headers)
