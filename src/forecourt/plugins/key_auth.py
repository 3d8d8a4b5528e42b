"""The `key-auth` plugin: Kong's API-key authentication.

A key is looked for, for each of `key_names` in order, in the request headers, then the query
string, then (with `key_in_body`) a form, JSON or multipart body. With `hide_credentials` every
configured key name is removed from every enabled place before the request is forwarded, so the
key never reaches the upstream. Keys are compared by one dict lookup in the table built when the
config was loaded.
"""

from __future__ import annotations

import time
from typing import Annotated, Any
from urllib.parse import unquote_plus

import orjson
from pydantic import Field

from forecourt.config.fields import Bool, HeaderName, NonEmptyStr, Str
from forecourt.pipeline import (
    Context,
    Credential,
    Plugin,
    PluginConfig,
    PluginEnv,
    PluginScope,
    Response,
)
from forecourt.plugins._consumer_headers import (
    HeaderPairs,
    anonymous_consumer,
    authenticate,
    consumer_headers,
)


class KeyAuthConfig(PluginConfig):
    key_names: Annotated[tuple[HeaderName, ...], Field(min_length=1)] = Field(
        ("apikey",), description="Header, query and body parameter names that carry the key."
    )
    hide_credentials: Bool = Field(False, description="Remove the key from the request sent upstream.")
    anonymous: NonEmptyStr | None = Field(
        None, description="Consumer (id or username) to use when authentication fails."
    )
    key_in_header: Bool = Field(True, description="Look for the key in request headers.")
    key_in_query: Bool = Field(True, description="Look for the key in the query string.")
    key_in_body: Bool = Field(
        False, description="Look for the key in a form, JSON or multipart request body."
    )
    run_on_preflight: Bool = Field(True, description="Authenticate CORS preflight (OPTIONS) requests too.")
    realm: Str | None = Field(None, description="`realm` of the `WWW-Authenticate` challenge on 401.")


class _BodyError(Exception):
    """The request body cannot be read for a key (Kong's 400 "Cannot process request body")."""


_DUPLICATE = object()


class KeyAuthPlugin(Plugin[KeyAuthConfig]):
    """Authenticates a consumer by one of its `keyauth_credentials`."""

    name = "key-auth"
    priority = 1250
    Config = KeyAuthConfig

    def __init__(self, config: KeyAuthConfig, scope: PluginScope, env: PluginEnv) -> None:
        super().__init__(config, scope, env)
        if scope.consumer is not None:
            raise ValueError("the key-auth plugin cannot be applied to a consumer")
        consumers = env.consumers
        self._anonymous = anonymous_consumer(config.anonymous, consumers)
        table = consumers.credentials.get("key-auth", {}) if consumers is not None else {}
        # Kong 3.x names a key-auth credential upstream by its id, never by the key itself.
        self._keys: dict[str, tuple[Credential, HeaderPairs, float | None]] = {
            key: (cred, consumer_headers(cred.consumer, cred.id), cred.data.get("expires_at"))
            for key, cred in table.items()
        }
        self._names = config.key_names
        self._lowered = tuple(name.lower().encode() for name in config.key_names)
        self._name_set = frozenset(config.key_names)
        challenge = b"Key" if config.realm is None else b'Key realm="%s"' % config.realm.encode()
        self._challenge = [(b"WWW-Authenticate", challenge)]

    def access(self, ctx: Context) -> Response | None:
        config = self.config
        if ctx.req.method == "OPTIONS" and not config.run_on_preflight:
            return None
        if self._anonymous is not None and ctx.credential is not None:
            return None  # another auth plugin already authenticated: Kong's logical OR
        failure = self._authenticate(ctx)
        if failure is None:
            return None
        if self._anonymous is not None:
            consumer, headers = self._anonymous
            authenticate(ctx, consumer, None, headers)
            return None
        return failure

    def _authenticate(self, ctx: Context) -> Response | None:
        try:
            key = self._find_key(ctx)
        except _BodyError:
            return Response.error(400, "Cannot process request body")
        if self.config.hide_credentials:
            self._hide(ctx)
        if key is _DUPLICATE:
            return Response.error(401, "Duplicate API key found", list(self._challenge))
        if not key:
            return Response.error(401, "No API key found in request", list(self._challenge))
        assert isinstance(key, str)
        found = self._keys.get(key)
        if found is None or (found[2] is not None and time.time() >= found[2]):
            return Response.error(401, "Unauthorized", list(self._challenge))
        credential, headers, _ = found
        authenticate(ctx, credential.consumer, credential, headers)
        return None

    # ------------------------------------------------------------------ finding the key
    def _find_key(self, ctx: Context) -> object:
        """The key (str), `_DUPLICATE`, or None; raises `_BodyError` for an unreadable body."""
        config = self.config
        req = ctx.req
        query: dict[str, list[str | None]] | None = None
        body: dict[str, list[Any]] | None = None
        for name, lowered in zip(self._names, self._lowered, strict=True):
            if config.key_in_header:
                values = [v for n, v in req.headers if n.lower() == lowered]
                if len(values) > 1:
                    return _DUPLICATE
                if values:
                    return values[0].decode("latin-1")
            if config.key_in_query and req.query:
                if query is None:
                    query = _query_args(req.query)
                found = query.get(name)
                if found:
                    return _single(found)
            if config.key_in_body:
                if body is None:
                    body = _body_args(ctx)
                found_body = body.get(name)
                if found_body:
                    return _single(found_body)
        return None

    # ------------------------------------------------------------------ hide_credentials
    def _hide(self, ctx: Context) -> None:
        config = self.config
        req = ctx.req
        if config.key_in_header:
            lowered = frozenset(self._lowered)
            req.headers = [(n, v) for n, v in req.headers if n.lower() not in lowered]
        if config.key_in_query and req.query:
            req.query = _without_args(req.query[1:], self._name_set, b"?")
        if config.key_in_body and req.complete and req.body_bytes:
            body = _body_without(ctx, self._name_set)
            if body is not None:
                req.body = [body] if body else []
                req.body_bytes = len(body)
                req.content_length = len(body)


def _single(values: list[Any]) -> object:
    """Kong: several values under one name are a duplicate key; a value-less `?apikey` is none."""
    if len(values) > 1:
        return _DUPLICATE
    value = values[0]
    if isinstance(value, str):
        return value
    if isinstance(value, list | dict):
        return _DUPLICATE
    return None


def _query_args(raw: bytes) -> dict[str, list[str | None]]:
    """`?a=1&a=2&b` → {"a": ["1", "2"], "b": [None]} (a bare name has no value, as in Kong)."""
    out: dict[str, list[str | None]] = {}
    text = raw[1:] if raw.startswith(b"?") else raw
    for part in text.split(b"&"):
        if not part:
            continue
        name, eq, value = part.partition(b"=")
        decoded = unquote_plus(value.decode("latin-1")) if eq else None
        out.setdefault(unquote_plus(name.decode("latin-1")), []).append(decoded)
    return out


def _without_args(raw: bytes, names: frozenset[str], prefix: bytes) -> bytes:
    kept = [
        part
        for part in raw.split(b"&")
        if part and unquote_plus(part.partition(b"=")[0].decode("latin-1")) not in names
    ]
    return prefix + b"&".join(kept) if kept else b""


def _content_type(ctx: Context) -> tuple[str, str]:
    """The body's media type (lowercase) and its `boundary` parameter, if any."""
    raw = ctx.header(b"content-type")
    if raw is None:
        return "", ""
    media, _, params = raw.decode("latin-1").partition(";")
    boundary = ""
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.lower() == "boundary":
            boundary = value.strip().strip('"')
    return media.strip().lower(), boundary


def _body_args(ctx: Context) -> dict[str, list[Any]]:
    """Form, JSON or multipart fields of a buffered body; {} without a body (or while streaming)."""
    req = ctx.req
    if not req.complete or not req.body_bytes:
        return {}
    data = b"".join(req.body)
    media, boundary = _content_type(ctx)
    if media == "application/x-www-form-urlencoded":
        return {k: list(v) for k, v in _query_args(data).items()}
    if media == "application/json":
        try:
            document = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise _BodyError from exc
        if not isinstance(document, dict):
            raise _BodyError
        return {k: [v] for k, v in document.items()}
    if media == "multipart/form-data" and boundary:
        out: dict[str, list[Any]] = {}
        for name, value, _, _ in _multipart_parts(data, boundary):
            if name is not None:
                out.setdefault(name, []).append(value.decode("utf-8", "replace"))
        return out
    raise _BodyError


def _body_without(ctx: Context, names: frozenset[str]) -> bytes | None:
    """The body with fields `names` removed, or None when it is left as it is."""
    data = b"".join(ctx.req.body)
    media, boundary = _content_type(ctx)
    if media == "application/x-www-form-urlencoded":
        return _without_args(data, names, b"")
    if media == "application/json":
        try:
            document = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(document, dict) or not names.intersection(document):
            return None
        return orjson.dumps({k: v for k, v in document.items() if k not in names})
    if media == "multipart/form-data" and boundary:
        parts = _multipart_parts(data, boundary)
        drop = [(start, end) for name, _, start, end in parts if name in names]
        if not drop:
            return None
        out, at = [], 0
        for start, end in drop:
            out.append(data[at:start])
            at = end
        out.append(data[at:])
        return b"".join(out)
    return None


def _multipart_parts(data: bytes, boundary: str) -> list[tuple[str | None, bytes, int, int]]:
    """(field name, value, start, end) of each part; start/end span the part and its delimiter."""
    delimiter = b"--" + boundary.encode("latin-1")
    parts: list[tuple[str | None, bytes, int, int]] = []
    at = data.find(delimiter)
    while at >= 0:
        head_start = at + len(delimiter)
        if data[head_start : head_start + 2] == b"--":
            break
        following = data.find(b"\r\n" + delimiter, head_start)
        if following < 0:
            break
        part = data[head_start:following]
        head, _, value = part.partition(b"\r\n\r\n")
        name: str | None = None
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-disposition:"):
                for param in line.decode("latin-1").split(";")[1:]:
                    key, _, raw = param.strip().partition("=")
                    if key.lower() == "name":
                        name = raw.strip('"')
        parts.append((name, value, at, following + 2))
        at = following + 2
    return parts
