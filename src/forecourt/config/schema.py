"""Entity schemas as written in a Kong 3.x declarative file (plus Forecourt's extensions).

These models check one entity at a time: types, Kong's defaults and per-field constraints. What
spans fields (`rules.py`) or entities (`references.py`) is checked afterwards, so one bad entity
does not hide the problems of the others. Nested arrays (`services[].routes`, `upstreams[].targets`,
...) are split off before validation by `document.py`, which is why they are not fields here.

Each `*Fields` base holds what the file entity and its normalized form (`model.py`) share.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, model_validator

from forecourt.config.aggregate import Aggregate
from forecourt.config.circuit_breaker import CircuitBreakerConfig
from forecourt.config.discovery import Discovery
from forecourt.config.fields import (
    UNSUPPORTED_PROTOCOLS,
    Bool,
    CookieName,
    EmptyIfNull,
    EntityName,
    HeaderName,
    Host,
    HttpProtocol,
    Int,
    Method,
    NonEmptyStr,
    Port,
    RoutePath,
    Sni,
    Str,
    Tags,
    TimeoutMs,
    UpstreamName,
    UpstreamPath,
    Utf8Name,
    Uuid,
    WildcardHost,
    is_hostname,
    is_ip,
    split_host_port,
)
from forecourt.config.healthchecks import Healthchecks
from forecourt.config.listen import Listen, parse_listen


def _empty_dict_if_null(value: object) -> object:
    return {} if value is None else value


EmptyDictIfNull = BeforeValidator(_empty_dict_if_null)


class Entity(BaseModel):
    """Base of every config model: unknown fields are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- references -------------------------------------------------------------------------------


class Reference(Entity):
    """A foreign key: `{id: ...}` or `{name: ...}`; a bare string is read as a name (or an id)."""

    id: Uuid | None = None
    name: NonEmptyStr | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Reference:
        if (self.id is None) == (self.name is None):
            raise ValueError('set exactly one of "id" or "name"')
        return self

    def __str__(self) -> str:
        return self.name if self.name is not None else f"id {self.id}"


def _reference_from_text(value: object) -> object:
    if isinstance(value, str):
        return {"name": value}
    if isinstance(value, dict | Reference):
        return value
    raise ValueError("expected a name, {name: ...} or {id: ...}")


Ref = Annotated[Reference, BeforeValidator(_reference_from_text)]


# --- services ---------------------------------------------------------------------------------


class ServiceUrl(Entity):
    """The parts of a service's `url` shorthand."""

    protocol: Literal["http", "https"]
    host: str
    port: int
    path: str | None


def _parse_service_url(value: object) -> object:
    if not isinstance(value, str):
        return value
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    if not scheme or not parts.netloc:
        raise ValueError(f'expected a URL like "http://host:port/path", got "{value}"')
    if scheme in UNSUPPORTED_PROTOCOLS:
        raise ValueError(f'protocol "{scheme}" is not supported (Forecourt proxies http and https)')
    if scheme not in ("http", "https"):
        raise ValueError(f'unknown URL scheme "{scheme}": expected http or https')
    if "@" in parts.netloc:
        raise ValueError("credentials in the URL are not supported")
    if parts.query or parts.fragment:
        raise ValueError("the URL must not have a query string or fragment")
    host, port = split_host_port(parts.netloc)
    if not (is_ip(host) or is_hostname(host)):
        raise ValueError(f'invalid host "{host}" in URL')
    if port is None:
        port = 443 if scheme == "https" else 80
    protocol: Literal["http", "https"] = "https" if scheme == "https" else "http"
    return ServiceUrl(protocol=protocol, host=host, port=port, path=parts.path or None)


class ServiceFields(Entity):
    id: Uuid | None = None
    tags: Tags = ()
    enabled: Bool = True
    path: UpstreamPath | None = Field(None, description="Path prefix added to upstream requests.")
    retries: Annotated[int, Strict(), Field(ge=0, le=32767)] = 5
    connect_timeout: TimeoutMs = Field(60000, description="Milliseconds to establish a connection.")
    write_timeout: TimeoutMs = Field(60000, description="Milliseconds between two successive writes.")
    read_timeout: TimeoutMs = Field(60000, description="Milliseconds between two successive reads.")
    tls_verify: Bool | None = None
    tls_verify_depth: Annotated[int, Strict(), Field(ge=0, le=64)] | None = None
    ca_certificates: tuple[Uuid, ...] | None = None
    circuit_breaker: CircuitBreakerConfig | None = Field(
        None, description="Forecourt extension: a circuit breaker per target (closed/open/half-open)."
    )


class ServiceEntity(ServiceFields):
    """A service as written: either `url` or `protocol`/`host`/`port`/`path`."""

    name: EntityName | None = None
    url: Annotated[ServiceUrl, BeforeValidator(_parse_service_url)] | None = None
    protocol: HttpProtocol | None = None
    host: Host | None = None
    port: Port | None = None
    client_certificate: Ref | None = None


# --- routes -----------------------------------------------------------------------------------


def _reject_stream_field(value: object) -> object:
    if value is not None:
        raise ValueError("not supported: stream routing (tcp/tls/udp) is not implemented by Forecourt")
    return value


StreamOnly = Annotated[Any, BeforeValidator(_reject_stream_field)]


class RouteFields(Entity):
    id: Uuid | None = None
    tags: Tags = ()
    protocols: Annotated[tuple[HttpProtocol, ...], EmptyIfNull, Field(min_length=1)] = ("http", "https")
    methods: Annotated[tuple[Method, ...], EmptyIfNull] = ()
    hosts: Annotated[tuple[WildcardHost, ...], EmptyIfNull] = ()
    paths: Annotated[tuple[RoutePath, ...], EmptyIfNull] = ()
    headers: Annotated[dict[HeaderName, tuple[Str, ...]], EmptyDictIfNull] = Field(default_factory=dict)
    snis: Annotated[tuple[Sni, ...], EmptyIfNull] = ()
    https_redirect_status_code: Literal[426, 301, 302, 307, 308] = 426
    regex_priority: Int = 0
    strip_path: Bool = True
    path_handling: Literal["v0", "v1"] = "v0"
    preserve_host: Bool = False
    request_buffering: Bool = True
    response_buffering: Bool = True
    aggregate: Aggregate | None = Field(
        None, description="Fan the request out to several backends (instead of a service)."
    )


class RouteEntity(RouteFields):
    """A route as written; `service` is only for top-level routes."""

    name: Utf8Name | None = None
    service: Ref | None = None
    sources: StreamOnly = None
    destinations: StreamOnly = None


# --- upstreams and targets --------------------------------------------------------------------

HashOn = Literal["none", "consumer", "ip", "header", "cookie", "path", "query_arg", "uri_capture"]


class UpstreamFields(Entity):
    id: Uuid | None = None
    name: UpstreamName
    tags: Tags = ()
    algorithm: Literal["round-robin", "consistent-hashing", "least-connections", "latency"] = "round-robin"
    hash_on: HashOn = "none"
    hash_fallback: HashOn = "none"
    hash_on_header: HeaderName | None = None
    hash_fallback_header: HeaderName | None = None
    hash_on_cookie: CookieName | None = None
    hash_on_cookie_path: UpstreamPath = "/"
    hash_on_query_arg: NonEmptyStr | None = None
    hash_fallback_query_arg: NonEmptyStr | None = None
    hash_on_uri_capture: NonEmptyStr | None = None
    hash_fallback_uri_capture: NonEmptyStr | None = None
    slots: Annotated[int, Strict(), Field(ge=10, le=65536)] = 10000
    healthchecks: Healthchecks = Field(default_factory=Healthchecks)
    host_header: Host | None = None
    use_srv_name: Bool = False
    discovery: Discovery | None = Field(
        None, description="Where targets come from at run time (dns, eureka, etcd, static)."
    )


class UpstreamEntity(UpstreamFields):
    """An upstream as written; its `targets` may nest."""

    client_certificate: Ref | None = None


def _normalize_target(value: object) -> object:
    """`host` → `host:8000` (Kong's default target port); `[v6]` keeps its brackets."""
    if not isinstance(value, str):
        return value
    host, port = split_host_port(value)
    if not (is_ip(host) or is_hostname(host)):
        raise ValueError(f'invalid target "{value}": not a valid hostname or IP address')
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{8000 if port is None else port}"


class TargetFields(Entity):
    id: Uuid | None = None
    tags: Tags = ()
    target: Annotated[str, Strict(), BeforeValidator(_normalize_target)]
    weight: Annotated[int, Strict(), Field(ge=0, le=65535)] = 100


class TargetEntity(TargetFields):
    """A target as written; `upstream` is only for top-level targets."""

    upstream: Ref | None = None


# --- consumers, plugins -----------------------------------------------------------------------


class ConsumerEntity(Entity):
    """A consumer; its credentials (`keyauth_credentials`, `jwt_secrets`, `acls`) may nest and are
    validated on their own (`credentials.py`)."""

    id: Uuid | None = None
    username: NonEmptyStr | None = None
    custom_id: NonEmptyStr | None = None
    tags: Tags = ()


PluginProtocol = Literal[
    "grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough", "udp", "ws", "wss"
]


class PluginFields(Entity):
    id: Uuid | None = None
    name: NonEmptyStr
    instance_name: Utf8Name | None = None
    enabled: Bool = True
    protocols: Annotated[tuple[PluginProtocol, ...], EmptyIfNull] = ("grpc", "grpcs", "http", "https")
    tags: Tags = ()


class PluginEntity(PluginFields):
    """A plugin as written; its `config` is checked against the plugin's own schema later."""

    config: Annotated[dict[str, Any], EmptyDictIfNull] = Field(default_factory=dict)
    route: Ref | None = None
    service: Ref | None = None
    consumer: Ref | None = None


# --- certificates -----------------------------------------------------------------------------


class CertificateFields(Entity):
    id: Uuid | None = None
    cert: NonEmptyStr
    key: NonEmptyStr
    cert_alt: NonEmptyStr | None = None
    key_alt: NonEmptyStr | None = None
    tags: Tags = ()


class CertificateEntity(CertificateFields):
    """A certificate as written; its `snis` may nest (as names or `{name: ...}`)."""


class SniEntity(Entity):
    """A server name served with a certificate; `certificate` is only for top-level SNIs."""

    id: Uuid | None = None
    name: Sni
    tags: Tags = ()
    certificate: Ref | None = None


class CACertificateEntity(Entity):
    """A trusted CA certificate (PEM), referenced by id from services' `ca_certificates`."""

    id: Uuid | None = None
    cert: NonEmptyStr
    cert_digest: NonEmptyStr | None = None
    tags: Tags = ()


# --- the document's own fields ----------------------------------------------------------------


class DocumentHeader(Entity):
    """The top level's scalar fields (the entity arrays are validated one entity at a time)."""

    format_version: Literal["1.1", "2.1", "3.0"] | None = Field(None, alias="_format_version")
    transform: Bool = Field(True, alias="_transform")
    comment: Str | None = Field(None, alias="_comment")
    workspace: Str | None = Field(None, alias="_workspace")
    listen: Annotated[tuple[Annotated[Listen, BeforeValidator(parse_listen)], ...], EmptyIfNull] = ()
