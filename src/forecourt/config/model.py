"""The normalized config: what the rest of Forecourt compiles into a runtime plan.

Nesting is flattened (every route, plugin and target is in one list, in file order), references
are resolved to names, defaults are filled in, and every entity keeps `source_path` so a later
stage can report an error at the line the user wrote (`GatewayConfig.issue`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field

from forecourt.config.credentials import AclFields, JwtAlgorithm, JwtSecretFields, KeyAuthCredentialFields
from forecourt.config.errors import ConfigIssue, KeyPath
from forecourt.config.listen import Listen
from forecourt.config.schema import (
    CACertificateEntity,
    CertificateFields,
    ConsumerEntity,
    PluginFields,
    RouteFields,
    ServiceFields,
    TargetFields,
    UpstreamFields,
)
from forecourt.config.source import ConfigSource

SourcePath = tuple[str | int, ...]


class Service(ServiceFields):
    """A service with its `url` expanded and defaults applied; `name` is generated if unset."""

    name: str
    protocol: Literal["http", "https"]
    host: str
    port: int
    client_certificate: str | None = None  # a certificate id
    source_path: SourcePath = ()


class Route(RouteFields):
    """A route; `service` is the owning service's name (None for a route without a service)."""

    name: str
    service: str | None = None
    source_path: SourcePath = ()


class Target(TargetFields):
    """A target `host:port` of an upstream, with the address also split into `host` and `port`."""

    host: str
    port: int
    upstream: str
    source_path: SourcePath = ()


class Upstream(UpstreamFields):
    """An upstream with all its targets, nested and top-level, in file order."""

    client_certificate: str | None = None  # a certificate id
    targets: tuple[Target, ...] = ()
    source_path: SourcePath = ()


class KeyAuthCredential(KeyAuthCredentialFields):
    """A key-auth credential; `key` is filled in (generated when the file has none)."""

    key: str = Field(repr=False)
    consumer: str
    source_path: SourcePath = ()


class JwtSecret(JwtSecretFields):
    """A JWT secret; `algorithms` is the credential's allow-list, never empty.

    `algorithm` is Kong's field (HS256 when unset, None for a JWKS credential that names none);
    `secret` is filled in for HMAC credentials (generated when the file has none).
    """

    key: str
    algorithm: JwtAlgorithm | None
    algorithms: tuple[JwtAlgorithm, ...]
    consumer: str
    source_path: SourcePath = ()


class Acl(AclFields):
    """A consumer's membership of an ACL group."""

    consumer: str
    source_path: SourcePath = ()


class Consumer(ConsumerEntity):
    """A consumer; `name` is its username, or a generated name when it only has a custom_id.

    Credentials (nested and top-level) are attached here in file order; they are excluded from
    `model_dump` so entity listings never carry keys or secrets.
    """

    name: str
    keyauth_credentials: tuple[KeyAuthCredential, ...] = Field((), exclude=True)
    jwt_secrets: tuple[JwtSecret, ...] = Field((), exclude=True)
    acls: tuple[Acl, ...] = Field((), exclude=True)
    source_path: SourcePath = ()


class PluginConfig(PluginFields):
    """A plugin instance and its scope; `config` is an instance of the plugin's schema model."""

    config: BaseModel
    route: str | None = None
    service: str | None = None
    consumer: str | None = None
    source_path: SourcePath = ()


class Certificate(CertificateFields):
    """A certificate with the SNI names it serves (nested and top-level SNIs merged)."""

    snis: tuple[str, ...] = ()
    source_path: SourcePath = ()


class CACertificate(CACertificateEntity):
    """A CA certificate and where it was declared."""

    source_path: SourcePath = ()


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """One gateway's validated configuration: built once per load, never mutated."""

    source: ConfigSource
    format_version: str | None = None
    services: list[Service] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    upstreams: list[Upstream] = field(default_factory=list)
    consumers: list[Consumer] = field(default_factory=list)
    plugins: list[PluginConfig] = field(default_factory=list)
    certificates: list[Certificate] = field(default_factory=list)
    ca_certificates: list[CACertificate] = field(default_factory=list)
    listen: list[Listen] = field(default_factory=list)

    def issue(self, path: KeyPath, message: str) -> ConfigIssue:
        """An issue at `path` in this config's file, for errors found by later compile stages."""
        return self.source.issue(path, message)
