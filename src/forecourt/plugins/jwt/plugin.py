"""The `jwt` plugin: Kong's JWT authentication, safe by construction.

Per request, with a token seen before, the work is: find the token (one pass over the headers),
one dict lookup in a bounded cache of verified tokens, one clock read, and setting the consumer
headers. Everything else happens once per token (decode, key lookup, signature, claims) or once
per config load (secrets decoded, PEM keys parsed into verifiers, consumer headers encoded).

Caching a verified token is sound because its signature and claims never change and every
time-dependent check only gets easier with time except `exp`: an entry lives until the token
expires (plus leeway) and at most `CACHE_SECONDS`, so a key dropped from a JWKS stops working
within that bound. Only successes are cached, so invalid tokens cannot fill the cache.

Safety rules (beyond Kong): the token's `alg` must be in its credential's allow-list, which never
mixes HMAC with public-key algorithms, so an RSA public key can never be used as an HMAC secret;
`alg: none` is not an algorithm; `exp`/`nbf` must be JSON numbers (a numeric string is refused);
leeway is bounded; `iss` and `aud` compare exactly.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard
from urllib.parse import parse_qsl

import orjson

from forecourt.config.credentials import JWT_ALGORITHMS
from forecourt.http.headers import header_shape, shape_marks
from forecourt.pipeline.consumers import Credential
from forecourt.pipeline.context import Context
from forecourt.pipeline.plugin import Plugin, PluginEnv, PluginScope
from forecourt.pipeline.response import Response
from forecourt.plugins._consumer_headers import (
    CONSUMER_HEADER_NAMES,
    HeaderPairs,
    anonymous_consumer,
    authenticate,
    consumer_headers,
)
from forecourt.plugins.jwt.config import JwtConfig
from forecourt.plugins.jwt.jwks import REGISTRY, JwksSource
from forecourt.plugins.jwt.keys import (
    Verifier,
    b64url_decode,
    decode_secret_base64,
    hmac_verifiers,
    pem_verifiers,
)

CACHE_SIZE = 4096
CACHE_SECONDS = 60.0

_SUPPORTED = frozenset(JWT_ALGORITHMS)
_TOKEN = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"\s*[Bb]earer\s+(.+)")
_MULTIPLE = object()


@dataclass(frozen=True, slots=True)
class _Secret:
    """One `jwt_secrets` credential as this plugin instance verifies it."""

    credential: Credential
    headers: HeaderPairs
    algorithms: frozenset[str]
    verifiers: Mapping[str, Verifier] | None  # None: no usable key (bad base64 secret) or JWKS
    jwks: JwksSource | None


@dataclass(frozen=True, slots=True)
class _Verified:
    valid_until: float
    secret: _Secret
    claims: dict[str, Any]
    groups: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class _Failure:
    message: str | None
    errors: dict[str, str] | None = None
    challenge_error: bool = True
    final: bool = False
    """The same token can never pass with this config (malformed, unknown key, bad signature):
    safe to remember, unlike time-dependent claim failures or a JWKS key that may yet appear."""


@dataclass(frozen=True, slots=True)
class _Pending:
    """The token needs a JWKS fetch before it can be checked."""

    wait: Awaitable[None]


class JwtPlugin(Plugin[JwtConfig]):
    """Verifies a JWT signed by a consumer's `jwt_secrets` credential."""

    name = "jwt"
    priority = 1450
    Config = JwtConfig

    def __init__(self, config: JwtConfig, scope: PluginScope, env: PluginEnv) -> None:
        super().__init__(config, scope, env)
        if scope.consumer is not None:
            raise ValueError("the jwt plugin cannot be applied to a consumer")
        consumers = env.consumers
        self._anonymous = anonymous_consumer(config.anonymous, consumers)
        self._secrets: dict[str, _Secret] = {}
        self._sources: list[JwksSource] = []
        table = consumers.credentials.get("jwt", {}) if consumers is not None else {}
        for key, credential in table.items():
            self._secrets[key] = self._secret(credential)
        self._params = frozenset(config.uri_param_names)
        self._cookies = frozenset(config.cookie_names)
        self._headers = frozenset(name.lower().encode() for name in config.header_names)
        self._header_lengths = frozenset(len(name) for name in self._headers)
        # The usual config (one header name, no cookies): only the first such header can hold a
        # token besides the query, and the same pass tells `authenticate` whether it must strip
        # client-sent consumer headers.
        self._single_header = (
            next(iter(self._headers)) if len(self._headers) == 1 and not self._cookies else None
        )
        self._scan_marks = shape_marks([*CONSUMER_HEADER_NAMES, *self._headers])
        self._skip_preflight = not config.run_on_preflight
        self._claims = config.claims_to_verify
        self._audiences = frozenset(config.audiences)
        groups_claim = config.authenticated_groups_claim
        self._groups_path = tuple(groups_claim.split(".")) if groups_claim else None
        base = b"Bearer" if config.realm is None else b'Bearer realm="%s"' % config.realm.encode()
        self._challenge = base
        self._challenge_error = base + b' error="invalid_token"'
        self._verified: dict[str, _Verified] = {}
        # Tokens that can never verify under this config: replaying one (an attack, or a client
        # stuck on a revoked key) costs a dict lookup instead of decoding and an HMAC.
        self._refused: dict[str, _Failure] = {}

    def _secret(self, credential: Credential) -> _Secret:
        data = credential.data
        algorithms: tuple[str, ...] = tuple(data["algorithms"])
        headers = consumer_headers(credential.consumer, credential.key)
        verifiers: Mapping[str, Verifier] | None = None
        jwks: JwksSource | None = None
        if data.get("jwks_uri"):
            config = self.config
            jwks = REGISTRY.source(
                data["jwks_uri"],
                float(config.jwks_refresh_interval),
                float(config.jwks_min_refresh_interval),
            )
            if jwks not in self._sources:
                self._sources.append(jwks)
        elif algorithms[0].startswith("HS"):
            secret: str = data["secret"]
            raw = decode_secret_base64(secret) if self.config.secret_is_base64 else secret.encode()
            verifiers = hmac_verifiers(raw, algorithms) if raw else None
        else:
            verifiers = pem_verifiers(data["rsa_public_key"], algorithms)
        return _Secret(credential, headers, frozenset(algorithms), verifiers, jwks)

    async def start(self) -> None:
        for source in self._sources:
            REGISTRY.acquire(source)

    async def close(self) -> None:
        for source in self._sources:
            await REGISTRY.release(source)

    # ------------------------------------------------------------------ access
    def access(self, ctx: Context) -> Response | Awaitable[Response | None] | None:
        req = ctx.req
        if req.method == "OPTIONS" and self._skip_preflight:
            return None
        anonymous = self._anonymous
        if anonymous is not None and ctx.credential is not None:
            return None  # another auth plugin already authenticated: Kong's logical OR
        wanted = self._single_header
        token: object
        if wanted is not None and not (req.query and self._params):
            token, spoofed = self._header_token(req.headers, wanted, self._scan_marks)
        else:
            token, spoofed = self._find_token(ctx), True
        if type(token) is str:
            hit = self._verified.get(token)
            if hit is not None and hit.valid_until > time.time():
                self._accept(ctx, token, hit, spoofed)
                return None
            refused = self._refused.get(token)
            if refused is not None:
                if anonymous is not None:
                    authenticate(ctx, anonymous[0], None, anonymous[1], spoofed=spoofed)
                    return None
                return self._finish(ctx, token, refused)
            outcome = self._check(token, allow_fetch=True)
            if isinstance(outcome, _Failure) and outcome.final:
                refused_cache = self._refused
                if len(refused_cache) >= CACHE_SIZE:
                    del refused_cache[next(iter(refused_cache))]
                refused_cache[token] = outcome
        else:
            outcome = (
                _Failure("Unauthorized", challenge_error=False)
                if token is None
                else _Failure("Multiple tokens provided")
            )
        if isinstance(outcome, _Pending):
            assert type(token) is str
            return self._after_fetch(ctx, token, outcome.wait)
        return self._finish(ctx, token, outcome)

    async def _after_fetch(self, ctx: Context, token: str, wait: Awaitable[None]) -> Response | None:
        await wait
        outcome = self._check(token, allow_fetch=False)
        assert not isinstance(outcome, _Pending)
        return self._finish(ctx, token, outcome)

    def _finish(self, ctx: Context, token: object, outcome: _Verified | _Failure) -> Response | None:
        if isinstance(outcome, _Verified):
            assert type(token) is str
            self._remember(token, outcome)
            self._accept(ctx, token, outcome)
            return None
        if self._anonymous is not None:
            consumer, headers = self._anonymous
            authenticate(ctx, consumer, None, headers)
            return None
        challenge = self._challenge_error if outcome.challenge_error else self._challenge
        extra = [(b"WWW-Authenticate", challenge)]
        if outcome.errors is not None:
            return Response.json(401, outcome.errors, extra)
        return Response.error(401, outcome.message or "Unauthorized", extra)

    def _accept(self, ctx: Context, token: str, verified: _Verified, spoofed: bool = True) -> None:
        secret = verified.secret
        authenticate(ctx, secret.credential.consumer, secret.credential, secret.headers, spoofed=spoofed)
        ctx.jwt_claims = verified.claims
        ctx.shared["authenticated_jwt_token"] = token
        if verified.groups is not None:
            ctx.authenticated_groups = verified.groups

    def _remember(self, token: str, verified: _Verified) -> None:
        cache = self._verified
        if len(cache) >= CACHE_SIZE:
            del cache[next(iter(cache))]  # the oldest entry: insertion order
        cache[token] = verified

    # ------------------------------------------------------------------ finding the token
    @staticmethod
    def _header_token(
        headers: list[tuple[bytes, bytes]], wanted: bytes, marks: bytes
    ) -> tuple[str | None, bool]:
        """The token of the first `wanted` header (Kong reads the first of repeated headers), and
        whether the client sent a consumer header: one pass serves both.

        `marks` marks the shapes of `wanted` and of the consumer headers' names (`shape_marks`):
        most headers are passed over without lowering their names.
        """
        token: str | None = None
        found = spoofed = False
        for name, value in headers:
            if name and marks[header_shape(name)]:
                lowered = name.lower()
                if lowered == wanted and not found:
                    token = _bearer_token(value)
                    found = True
                if lowered in CONSUMER_HEADER_NAMES:
                    spoofed = True
        return token, spoofed

    def _find_token(self, ctx: Context) -> object:
        """The request's one token, None when there is none, `_MULTIPLE` for different ones."""
        found: str | None = None
        req = ctx.req
        tokens: list[str] = []
        if self._params and req.query:
            for param, arg in parse_qsl(req.query[1:].decode("latin-1"), keep_blank_values=True):
                if param in self._params and arg:
                    tokens.append(arg)
        lengths = self._header_lengths
        wanted = self._headers
        seen: set[bytes] | None = None
        for name, value in req.headers:
            if len(name) in lengths:
                lowered = name.lower()
                if lowered in wanted:
                    if seen is None:
                        seen = set()
                    elif lowered in seen:
                        continue  # Kong reads the first of repeated headers
                    seen.add(lowered)
                    bearer = _bearer_token(value)
                    if bearer is not None:
                        tokens.append(bearer)
            if self._cookies and len(name) == 6 and name.lower() == b"cookie":
                for part in value.decode("latin-1").split(";"):
                    cookie, _, cookie_value = part.strip().partition("=")
                    if cookie in self._cookies and cookie_value:
                        tokens.append(cookie_value)
        for token in tokens:
            if found is None:
                found = token
            elif token != found:
                return _MULTIPLE
        return found

    # ------------------------------------------------------------------ verifying
    def _check(self, token: str, *, allow_fetch: bool) -> _Verified | _Failure | _Pending:
        if not _TOKEN.fullmatch(token):
            return _Failure("Bad token; invalid JSON", final=True)
        head64, claims64, sig64 = token.split(".")
        try:
            header = orjson.loads(b64url_decode(head64))
            claims = orjson.loads(b64url_decode(claims64))
            signature = b64url_decode(sig64)
        except ValueError:
            return _Failure("Bad token; invalid JSON", final=True)
        if not isinstance(header, dict):
            return _Failure("Bad token; invalid JSON", final=True)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in _SUPPORTED:
            return _Failure("Bad token; invalid alg", final=True)
        if not isinstance(claims, dict):
            return _Failure("Bad token; invalid claims", final=True)
        claim_name = self.config.key_claim_name
        key = claims.get(claim_name)
        if key is None:
            key = header.get(claim_name)
        if key is None:
            return _Failure(f"No mandatory '{claim_name}' in claims", final=True)
        if not isinstance(key, str) or key == "":
            return _Failure(f"Invalid '{claim_name}' in claims", final=True)
        secret = self._secrets.get(key)
        if secret is None:
            return _Failure(f"No credentials found for given '{claim_name}'", final=True)
        if alg not in secret.algorithms:
            return _Failure("Invalid algorithm", final=True)
        signing_input = token[: len(head64) + 1 + len(claims64)].encode("ascii")
        if secret.jwks is not None:
            candidates = self._jwks_candidates(secret.jwks, header.get("kid"), alg, allow_fetch)
            if isinstance(candidates, _Pending | _Failure):
                return candidates
        else:
            verifier = secret.verifiers.get(alg) if secret.verifiers is not None else None
            if verifier is None:
                return _Failure("Invalid key/secret")
            candidates = [verifier]
        if not any(v.verify(signing_input, signature) for v in candidates):
            # With a JWKS the key set may still change; a fixed secret never will.
            return _Failure("Invalid signature", final=secret.jwks is None)
        now = time.time()
        errors = self._claim_errors(claims, secret, now)
        if errors:
            return _Failure(None, errors)
        valid_until = now + CACHE_SECONDS
        if "exp" in self._claims:
            exp = claims["exp"]
            maximum = self.config.maximum_expiration
            if maximum > 0 and exp - now > maximum:
                return _Failure(None, {"exp": "exceeds maximum allowed expiration"})
            valid_until = min(valid_until, exp + self.config.leeway)
        groups = self._groups(claims) if self._groups_path is not None else None
        return _Verified(valid_until, secret, claims, groups)

    def _jwks_candidates(
        self, source: JwksSource, kid: object, alg: str, allow_fetch: bool
    ) -> list[Verifier] | _Pending | _Failure:
        keys = source.keys
        found = keys.candidates(kid, alg) if keys is not None else None
        if found is None:  # no key set yet, or a kid it does not know: maybe rotated
            wait = source.pending_refresh() if allow_fetch else None
            if wait is not None:
                return _Pending(wait)
            return _Failure("Invalid key/secret")
        if not found:
            return _Failure("Invalid algorithm")
        return found

    def _claim_errors(self, claims: dict[str, Any], secret: _Secret, now: float) -> dict[str, str]:
        errors: dict[str, str] = {}
        leeway = self.config.leeway
        for claim in self._claims:
            value = claims.get(claim)
            if claim == "iss":
                if not isinstance(value, str):
                    errors["iss"] = "must be a string"
                elif value != secret.credential.key:
                    errors["iss"] = "does not match the credential"
            elif not _is_number(value):
                errors[claim] = "must be a number"
            elif claim == "exp" and value + leeway <= now:
                errors["exp"] = "token expired"
            elif claim == "nbf" and value - leeway > now:
                errors["nbf"] = "token not valid yet"
        if self._audiences:
            aud = claims.get("aud")
            values = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else None
            if not values:
                errors["aud"] = "must be present"
            elif not any(isinstance(v, str) and v in self._audiences for v in values):
                errors["aud"] = "invalid audience"
        return errors

    def _groups(self, claims: dict[str, Any]) -> tuple[str, ...] | None:
        value: Any = claims
        for part in self._groups_path or ():
            if not isinstance(value, dict):
                return None
            value = value.get(part)
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list):
            return tuple(v for v in value if isinstance(v, str))
        return None


def _bearer_token(value: bytes) -> str | None:
    """The token of an `Authorization`-style header value, None when it holds none."""
    if value.startswith(b"Bearer ") or value[:7].lower() == b"bearer ":  # the common shapes, no regex
        bare = value[7:].strip()
        return bare.decode("latin-1") if bare else None
    match = _BEARER.search(value.decode("latin-1"))
    return match.group(1).strip() if match is not None else None


def _is_number(value: object) -> TypeGuard[int | float]:
    """A JSON number: int or float, never a bool and never a numeric string."""
    return type(value) is int or type(value) is float
