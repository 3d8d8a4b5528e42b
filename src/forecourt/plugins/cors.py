"""`cors`: Cross-Origin Resource Sharing at the gateway (Kong's cors plugin).

A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered here with
200 and the `Access-Control-Allow-*` headers, without reaching the upstream — unless
`preflight_continue`, which proxies it and adds nothing. Other responses get
`Access-Control-Allow-Origin` (and credentials / exposed headers) added.

Origins follow Kong: an entry made only of `A-Za-z0-9.:/-` is a plain origin, compared after
normalisation (scheme, host, port without the scheme's default); anything else is a regular
expression, anchored at both ends, matched against the request origin's host when the entry has
no `:`, else against the whole normalised origin. No origins, or `*`, allow every origin.

Difference from Kong: `credentials: true` together with allowing every origin (`*`, or no
origins) is refused at load. Kong then reflects any request Origin with
`Access-Control-Allow-Credentials: true`, which lets every web site make credentialed calls.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from forecourt.pipeline import Context, Plugin, PluginConfig, PluginEnv, PluginScope, Response, ResponseHead

Method = Literal["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE", "CONNECT"]
ALL_METHODS: list[Method] = ["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE", "CONNECT"]
_PLAIN_ORIGIN = re.compile(r"^[A-Za-z0-9.:/-]+$")
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_SKIP = "cors.skip"  # ctx.shared flag: this request was a preflight (answered or delegated)


class CorsConfig(PluginConfig):
    origins: list[str] | None = Field(
        None, description="Allowed origins: plain origins or regular expressions; none or '*' = any."
    )
    headers: list[str] | None = Field(
        None, description="Access-Control-Allow-Headers (default: echo Access-Control-Request-Headers)."
    )
    exposed_headers: list[str] | None = Field(None, description="Access-Control-Expose-Headers.")
    methods: list[Method] = Field(
        default_factory=lambda: list(ALL_METHODS), description="Access-Control-Allow-Methods."
    )
    max_age: float | None = Field(None, description="Access-Control-Max-Age (seconds).")
    credentials: bool = Field(False, description="Send Access-Control-Allow-Credentials: true.")
    private_network: bool = Field(
        False, description="Answer Access-Control-Request-Private-Network: true preflights."
    )
    preflight_continue: bool = Field(False, description="Proxy preflights to the upstream instead.")
    allow_origin_absent: bool = Field(
        True, description="Add CORS headers to responses of requests without an Origin header."
    )

    @field_validator("origins")
    @classmethod
    def _valid_origins(cls, value: list[str] | None) -> list[str] | None:
        for entry in value or ():
            if not entry:
                raise ValueError("an origin must not be empty")
            if entry != "*" and not _PLAIN_ORIGIN.match(entry):
                try:
                    re.compile(_anchored(entry))
                except re.error as exc:
                    raise ValueError(f"'{entry}' is not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _no_wildcard_credentials(self) -> CorsConfig:
        if self.credentials and (not self.origins or "*" in self.origins):
            raise ValueError(
                "credentials: true needs an explicit list of origins: with '*' (or no origins) every "
                "web site could make credentialed requests"
            )
        return self


def _anchored(entry: str) -> str:
    """Kong's anchoring of origin regexes: an implied `$`, and a leading `^` is redundant."""
    if not entry.endswith("$"):
        entry += "$"
    if entry.startswith("^"):
        entry = entry[1:]
    return entry


def normalize_origin(origin: str) -> tuple[str, str]:
    """`(origin, host)`: scheme://host[:port] without the scheme's default port, and the host."""
    try:
        parts = urlsplit(origin)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return origin, origin
    if not host:
        return origin, origin
    scheme = parts.scheme
    port_text = str(port) if port is not None else ""
    if port_text and _DEFAULT_PORTS.get(scheme) == port_text:
        port_text = ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    normalized = (f"{scheme}://" if scheme else "") + host + (f":{port_text}" if port_text else "")
    return normalized, host


class _OriginRule:
    __slots__ = ("by_host", "origin", "regex")

    def __init__(self, entry: str) -> None:
        self.by_host = ":" not in entry
        if _PLAIN_ORIGIN.match(entry):
            self.regex: re.Pattern[str] | None = None
            self.origin = normalize_origin(entry)[0]
        else:
            self.regex = re.compile(_anchored(entry))
            self.origin = ""

    def matches(self, origin: str, host: str) -> bool:
        if self.regex is None:
            return origin == self.origin
        return self.regex.match(host if self.by_host else origin) is not None


class CorsPlugin(Plugin[CorsConfig]):
    """Answers preflights and adds CORS headers to responses."""

    name = "cors"
    priority = 2000
    Config = CorsConfig

    def __init__(self, config: CorsConfig, scope: PluginScope, env: PluginEnv) -> None:
        super().__init__(config, scope, env)
        origins = config.origins or []
        self._allow_all = not origins or "*" in origins
        self._rules = () if self._allow_all else tuple(_OriginRule(o) for o in origins)
        self._credentials = config.credentials
        self._allow_headers = ",".join(config.headers).encode() if config.headers else None
        self._methods = ",".join(config.methods).encode()
        self._max_age = _number(config.max_age).encode() if config.max_age is not None else None
        self._exposed = ",".join(config.exposed_headers).encode() if config.exposed_headers else None
        self._private_network = config.private_network
        self._preflight_continue = config.preflight_continue
        self._origin_absent = config.allow_origin_absent
        self._normalized: dict[str, tuple[str, str]] = {}

    # ------------------------------------------------------------------ origins
    def _allowed_origin(self, origin: bytes | None) -> bytes | None:
        """The Access-Control-Allow-Origin value for a request `origin` (None: none allowed)."""
        if self._allow_all:
            return b"*"
        if origin is None:
            return None
        text = origin.decode("latin-1")
        normalized = self._normalized.get(text)
        if normalized is None:
            normalized = normalize_origin(text)
            if len(self._normalized) < 1024:
                self._normalized[text] = normalized
        value, host = normalized
        for rule in self._rules:
            if rule.matches(value, host):
                return value.encode("latin-1")
        return None

    def _origin_headers(self, origin: bytes | None) -> list[tuple[bytes, bytes]]:
        """Allow-Origin, Allow-Credentials and Vary, as Kong's configure_origin/credentials set them."""
        out: list[tuple[bytes, bytes]] = []
        allowed = self._allowed_origin(origin)
        if allowed is not None:
            out.append((b"Access-Control-Allow-Origin", allowed))
        if not self._allow_all:
            out.append((b"Vary", b"Origin"))
        if self._credentials and not self._allow_all:
            out.append((b"Access-Control-Allow-Credentials", b"true"))
        return out

    # ------------------------------------------------------------------ phases
    def access(self, ctx: Context) -> Response | None:
        req = ctx.req
        if req.method != "OPTIONS":
            return None
        origin = ctx.header(b"origin")
        if origin is None or ctx.header(b"access-control-request-method") is None:
            return None
        ctx.shared[_SKIP] = True
        if self._preflight_continue:
            return None
        headers = self._origin_headers(origin)
        if self._allow_headers is not None:
            headers.append((b"Access-Control-Allow-Headers", self._allow_headers))
        else:
            requested = ctx.header(b"access-control-request-headers")
            if requested is not None:
                headers.append((b"Access-Control-Allow-Headers", requested))
        headers.append((b"Access-Control-Allow-Methods", self._methods))
        if self._max_age is not None:
            headers.append((b"Access-Control-Max-Age", self._max_age))
        if self._private_network:
            wanted = ctx.header(b"access-control-request-private-network")
            if wanted is not None and wanted.strip() == b"true":
                headers.append((b"Access-Control-Allow-Private-Network", b"true"))
        return Response(200, headers=headers)

    def response(self, ctx: Context, head: ResponseHead) -> None:
        if ctx.shared.get(_SKIP):
            return
        origin = ctx.header(b"origin")
        if origin is None and not self._origin_absent:
            return
        allowed = self._allowed_origin(origin)
        if allowed is None:
            head.remove(b"access-control-allow-origin")
        else:
            head.set(b"Access-Control-Allow-Origin", allowed)
        if not self._allow_all:
            add_vary(head, b"Origin")
        if self._credentials and not self._allow_all:
            head.set(b"Access-Control-Allow-Credentials", b"true")
        if self._exposed is not None:
            head.set(b"Access-Control-Expose-Headers", self._exposed)


def add_vary(head: ResponseHead, token: bytes) -> None:
    """Add `token` to the response's Vary unless it is already listed (or Vary is `*`)."""
    lowered = token.lower()
    for name, value in head.headers:
        if name.lower() == b"vary":
            tokens = {t.strip().lower() for t in value.split(b",")}
            if lowered in tokens or b"*" in tokens:
                return
    head.add(b"Vary", token)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)
