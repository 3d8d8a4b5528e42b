"""Resolve references between entities and assemble the normalized `GatewayConfig`.

This runs after every entity has been validated on its own. It checks what needs the whole
document: unique names and ids, references that must point at an existing entity (by name or id),
one plugin per name and scope, and plugin configs against their schemas. Nested entities take
their parent as the reference; top-level ones name it.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel

from forecourt.config.aggregate import Aggregate, aggregate_problems
from forecourt.config.credentials import (
    AclFields,
    JwtAlgorithm,
    JwtSecretFields,
    KeyAuthCredentialFields,
    allowed_algorithms,
)
from forecourt.config.document import Declarations, Declared, EntityT
from forecourt.config.errors import KeyPath, format_path
from forecourt.config.listen import Listen
from forecourt.config.model import (
    Acl,
    CACertificate,
    Certificate,
    Consumer,
    GatewayConfig,
    JwtSecret,
    KeyAuthCredential,
    PluginConfig,
    Route,
    Service,
    Target,
    Upstream,
)
from forecourt.config.names import NameTable, unique
from forecourt.config.plugins import PluginSchemas, Scope, ScopeRegistry, validate_plugin_config
from forecourt.config.schema import (
    CACertificateEntity,
    CertificateFields,
    ConsumerEntity,
    PluginEntity,
    PluginFields,
    Reference,
    RouteFields,
    ServiceFields,
    TargetFields,
    UpstreamFields,
)
from forecourt.config.source import ConfigSource
from forecourt.config.validation import IssueLog


def resolve_config(declarations: Declarations, schemas: PluginSchemas, log: IssueLog) -> GatewayConfig | None:
    """The normalized config, or None when any issue was logged (now or before)."""
    config = _Resolver(declarations, schemas, log).resolve()
    return None if log.issues else config


def file_order(source: ConfigSource, declared: Sequence[Declared[EntityT]]) -> list[int]:
    """Indexes of `declared` sorted by the line each entity starts on (nesting makes the
    discovery order differ from the file order when, say, `routes:` comes before `services:`)."""
    return sorted(range(len(declared)), key=lambda index: (source.line_of(declared[index].path) or 0, index))


def _fields(entity: BaseModel, base: type[BaseModel]) -> dict[str, object]:
    """The values of `entity` for the fields it shares with its normalized form."""
    return {name: getattr(entity, name) for name in base.model_fields}


class _Resolver:
    def __init__(self, declarations: Declarations, schemas: PluginSchemas, log: IssueLog) -> None:
        self.d = declarations
        self.schemas = schemas
        self.log = log
        source = log.source
        self.route_order = file_order(source, declarations.routes)
        self.services = NameTable("service", declarations.services, log, name_field="name", prefix="service")
        self.routes = NameTable(
            "route", declarations.routes, log, name_field="name", prefix="route", order=self.route_order
        )
        self.upstreams = NameTable("upstream", declarations.upstreams, log, name_field="name")
        self.consumers = NameTable(
            "consumer", declarations.consumers, log, name_field="username", prefix="consumer"
        )
        unique(log, "consumer", declarations.consumers, "custom_id", lambda consumer: consumer.custom_id)
        self.certificates = NameTable("certificate", declarations.certificates, log, name_field=None)
        self.ca_certificates = NameTable("ca_certificate", declarations.ca_certificates, log, name_field=None)
        unique(log, "sni", declarations.snis, "name", lambda sni: sni.name)

    def resolve(self) -> GatewayConfig:
        header = self.d.header
        certificates = self._certificates()
        return GatewayConfig(
            source=self.log.source,
            format_version=header.format_version if header else None,
            services=self._services(),
            routes=self._routes(),
            upstreams=self._upstreams(),
            consumers=self._consumers(),
            plugins=self._plugins(),
            certificates=certificates,
            ca_certificates=self._ca_certificates(),
            listen=self._listen(),
        )

    def _ref(self, table: NameTable[EntityT], reference: Reference | None, path: KeyPath) -> str | None:
        return table.resolve(reference, path) if reference is not None else None

    def _services(self) -> list[Service]:
        out: list[Service] = []
        for index, item in enumerate(self.d.services):
            service = item.entity
            if service is None:
                continue
            client_certificate = self._ref(
                self.certificates, service.client_certificate, (*item.path, "client_certificate")
            )
            for position, ca_id in enumerate(service.ca_certificates or ()):
                if not self.ca_certificates.has_id(ca_id):
                    self.log.add(
                        (*item.path, "ca_certificates", position), f'no ca_certificate with id "{ca_id}"'
                    )
            url = service.url
            protocol = url.protocol if url else service.protocol or "http"
            fields = _fields(service, ServiceFields)
            if url is not None and url.path is not None:
                fields["path"] = url.path
            out.append(
                Service(
                    **fields,
                    name=self.services.names[index] or "",
                    protocol=protocol,
                    host=url.host if url else service.host or "",
                    port=url.port if url else service.port or (443 if protocol == "https" else 80),
                    client_certificate=client_certificate,
                    source_path=item.path,
                )
            )
        return out

    def _routes(self) -> list[Route]:
        out: list[Route] = []
        for index in self.route_order:
            item = self.d.routes[index]
            route = item.entity
            if route is None:
                continue
            if item.parent is not None:
                service = self.services.names[item.parent.index]
            else:
                service = self._ref(self.services, route.service, (*item.path, "service"))
            if route.aggregate is not None:
                self._aggregate(route.aggregate, item.path, service is not None or route.service is not None)
            out.append(
                Route(
                    **_fields(route, RouteFields),
                    name=self.routes.names[index] or "",
                    service=service,
                    source_path=item.path,
                )
            )
        return out

    def _aggregate(self, aggregate: Aggregate, route_path: KeyPath, has_service: bool) -> None:
        """A route's `aggregate`: no `service` beside it, and consistent across its backends."""
        path = (*route_path, "aggregate")
        if has_service:
            self.log.add(path, 'cannot be combined with "service": an aggregate route calls its backends')

        def resolve_service(name: str, at: KeyPath) -> str | None:
            return self.services.resolve(Reference(name=name), (*path, *at))

        for relative, message in aggregate_problems(aggregate, resolve_service):
            self.log.add((*path, *relative), message)

    def _upstreams(self) -> list[Upstream]:
        targets: dict[int, list[Target]] = {}
        seen: dict[tuple[int, str], KeyPath] = {}
        for index in file_order(self.log.source, self.d.targets):
            item = self.d.targets[index]
            target = item.entity
            if target is None:
                continue
            if item.parent is not None:
                owner: int | None = item.parent.index
            else:
                name = self._ref(self.upstreams, target.upstream, (*item.path, "upstream"))
                owner = self.upstreams.names.index(name) if name is not None else None
                if target.upstream is None:
                    self.log.add((*item.path, "upstream"), "required field missing")
            if owner is None:
                continue
            if seen.setdefault((owner, target.target), item.path) != item.path:
                self.log.add((*item.path, "target"), f'duplicate target "{target.target}" in this upstream')
            host, _, port = target.target.rpartition(":")
            targets.setdefault(owner, []).append(
                Target(
                    **_fields(target, TargetFields),
                    host=host.strip("[]"),
                    port=int(port),
                    upstream=self.upstreams.names[owner] or "",
                    source_path=item.path,
                )
            )
        out: list[Upstream] = []
        for index, declared in enumerate(self.d.upstreams):
            upstream = declared.entity
            if upstream is None:
                continue
            discovery = upstream.discovery
            if discovery is not None and discovery.type != "static" and targets.get(index):
                self.log.add(
                    (*declared.path, "discovery"),
                    f'cannot be combined with "targets": {discovery.type} discovery supplies this '
                    "upstream's targets at run time (remove the targets, or list them under "
                    "discovery {type: static})",
                )
            out.append(
                Upstream(
                    **_fields(upstream, UpstreamFields),
                    client_certificate=self._ref(
                        self.certificates, upstream.client_certificate, (*declared.path, "client_certificate")
                    ),
                    targets=tuple(targets.get(index, ())),
                    source_path=declared.path,
                )
            )
        return out

    def _consumers(self) -> list[Consumer]:
        owned = _CredentialResolver(self).resolve()
        out: list[Consumer] = []
        for index, item in enumerate(self.d.consumers):
            if item.entity is None:
                continue
            mine = owned.get(index, _Owned())
            out.append(
                Consumer(
                    **_fields(item.entity, ConsumerEntity),
                    name=self.consumers.names[index] or "",
                    keyauth_credentials=tuple(mine.keyauth),
                    jwt_secrets=tuple(mine.jwt),
                    acls=tuple(mine.acls),
                    source_path=item.path,
                )
            )
        return out

    def _plugins(self) -> list[PluginConfig]:
        registry = ScopeRegistry(self.log)
        out: list[PluginConfig] = []
        for index in file_order(self.log.source, self.d.plugins):
            item = self.d.plugins[index]
            plugin = item.entity
            if plugin is None:
                continue
            scope = self._scope(item)
            if item.parent is None or self._parent_name(item) is not None:
                # a plugin nested in an entity that failed validation has no reliable scope
                registry.add(plugin, scope, item.path)
            config = validate_plugin_config(plugin, item.path, self.schemas, self.log)
            if config is None:
                continue
            route, service, consumer = scope
            out.append(
                PluginConfig(
                    **_fields(plugin, PluginFields),
                    config=config,
                    route=route,
                    service=service,
                    consumer=consumer,
                    source_path=item.path,
                )
            )
        return out

    def _parent_name(self, item: Declared[PluginEntity]) -> str | None:
        parent = item.parent
        assert parent is not None
        if parent.kind == "services":
            return self.services.names[parent.index]
        if parent.kind == "routes":
            return self.routes.names[parent.index]
        return self.consumers.names[parent.index]

    def _scope(self, item: Declared[PluginEntity]) -> Scope:
        plugin = item.entity
        assert plugin is not None
        parent = item.parent
        route = (
            self.routes.names[parent.index]
            if parent is not None and parent.kind == "routes"
            else self._ref(self.routes, plugin.route, (*item.path, "route"))
        )
        service = (
            self.services.names[parent.index]
            if parent is not None and parent.kind == "services"
            else self._ref(self.services, plugin.service, (*item.path, "service"))
        )
        consumer = (
            self.consumers.names[parent.index]
            if parent is not None and parent.kind == "consumers"
            else self._ref(self.consumers, plugin.consumer, (*item.path, "consumer"))
        )
        return route, service, consumer

    def _certificates(self) -> list[Certificate]:
        snis: dict[int, list[str]] = {}
        for index in file_order(self.log.source, self.d.snis):
            item = self.d.snis[index]
            sni = item.entity
            if sni is None:
                continue
            if item.parent is not None:
                owner: int | None = item.parent.index
            elif sni.certificate is None:
                self.log.add((*item.path, "certificate"), "required field missing")
                owner = None
            else:
                found = self.certificates.resolve(sni.certificate, (*item.path, "certificate"))
                owner = self.certificates.names.index(found) if found is not None else None
            if owner is not None:
                snis.setdefault(owner, []).append(sni.name)
        return [
            Certificate(
                **_fields(item.entity, CertificateFields),
                snis=tuple(snis.get(index, ())),
                source_path=item.path,
            )
            for index, item in enumerate(self.d.certificates)
            if item.entity is not None
        ]

    def _ca_certificates(self) -> list[CACertificate]:
        return [
            CACertificate(**_fields(item.entity, CACertificateEntity), source_path=item.path)
            for item in self.d.ca_certificates
            if item.entity is not None
        ]

    def _listen(self) -> list[Listen]:
        header = self.d.header
        if header is None:
            return []
        seen: set[str] = set()
        for position, listen in enumerate(header.listen):
            address = f"{listen.host}:{listen.port}"
            if address in seen:
                self.log.add(("listen", position), f'duplicate listen address "{address}"')
            seen.add(address)
        return list(header.listen)


def _generated() -> str:
    """A random key or secret for a credential the file left it out of (Kong's `auto` fields)."""
    return secrets.token_hex(16)


@dataclass(slots=True)
class _Owned:
    """The credentials of one consumer, in file order."""

    keyauth: list[KeyAuthCredential] = field(default_factory=list)
    jwt: list[JwtSecret] = field(default_factory=list)
    acls: list[Acl] = field(default_factory=list)


class _CredentialResolver:
    """Credentials → their consumer, with Kong's uniqueness rules.

    Keys Kong would generate (`key` of both credential kinds, an HMAC `secret`) are generated at
    random, as Kong does on insert: such a credential works only for whoever reads it back.
    """

    def __init__(self, resolver: _Resolver) -> None:
        self.r = resolver
        self.log = resolver.log
        self.owned: dict[int, _Owned] = {}

    def resolve(self) -> dict[int, _Owned]:
        self._keyauth()
        self._jwt()
        self._acls()
        return self.owned

    def _owner(self, item: Declared[EntityT], reference: Reference | None) -> int | None:
        """The consumer index a credential belongs to, or None after logging why there is none."""
        if item.parent is not None:
            return item.parent.index if self.r.consumers.names[item.parent.index] is not None else None
        if reference is None:
            self.log.add((*item.path, "consumer"), "required field missing")
            return None
        name = self.r.consumers.resolve(reference, (*item.path, "consumer"))
        return self.r.consumers.names.index(name) if name is not None else None

    def _ordered(self, declared: Sequence[Declared[EntityT]]) -> list[Declared[EntityT]]:
        return [declared[i] for i in file_order(self.log.source, declared)]

    def _unique_id(self, kind: str, item: Declared[EntityT], seen: dict[str, KeyPath]) -> None:
        entity_id = getattr(item.entity, "id", None)
        if entity_id is None:
            return
        first = seen.setdefault(entity_id, item.path)
        if first != item.path:
            where = format_path(first)
            self.log.add((*item.path, "id"), f'duplicate {kind} id "{entity_id}" (first at {where})')

    def _keyauth(self) -> None:
        ids: dict[str, KeyPath] = {}
        keys: dict[str, KeyPath] = {}
        for item in self._ordered(self.d.keyauth_credentials):
            credential = item.entity
            if credential is None:
                continue
            self._unique_id("keyauth_credential", item, ids)
            if credential.key is not None:
                first = keys.setdefault(credential.key, item.path)
                if first != item.path:
                    # The key is a secret: say where the other one is, never what it is.
                    self.log.add((*item.path, "key"), f"duplicate key (first at {format_path(first)})")
            owner = self._owner(item, credential.consumer)
            if owner is None:
                continue
            self.owned.setdefault(owner, _Owned()).keyauth.append(
                KeyAuthCredential(
                    **_fields(credential, KeyAuthCredentialFields) | {"key": credential.key or _generated()},
                    consumer=self.r.consumers.names[owner] or "",
                    source_path=item.path,
                )
            )

    def _jwt(self) -> None:
        ids: dict[str, KeyPath] = {}
        keys: dict[str, KeyPath] = {}
        for item in self._ordered(self.d.jwt_secrets):
            secret = item.entity
            if secret is None:
                continue
            self._unique_id("jwt_secret", item, ids)
            if secret.key is not None:
                first = keys.setdefault(secret.key, item.path)
                if first != item.path:
                    message = f'duplicate jwt_secret key "{secret.key}" (first at {format_path(first)})'
                    self.log.add((*item.path, "key"), message)
            owner = self._owner(item, secret.consumer)
            if owner is None:
                continue
            algorithm: JwtAlgorithm | None = secret.algorithm
            if algorithm is None and secret.jwks_uri is None:
                algorithm = "HS256"
            allowed = allowed_algorithms(secret, algorithm)
            fields = _fields(secret, JwtSecretFields)
            fields["key"] = secret.key or _generated()
            fields["algorithms"] = allowed
            if secret.secret is None and allowed[0].startswith("HS"):
                fields["secret"] = _generated()
            self.owned.setdefault(owner, _Owned()).jwt.append(
                JwtSecret(
                    **fields,
                    algorithm=algorithm,
                    consumer=self.r.consumers.names[owner] or "",
                    source_path=item.path,
                )
            )

    def _acls(self) -> None:
        ids: dict[str, KeyPath] = {}
        groups: dict[tuple[int, str], KeyPath] = {}
        for item in self._ordered(self.d.acls):
            acl = item.entity
            if acl is None:
                continue
            self._unique_id("acl", item, ids)
            owner = self._owner(item, acl.consumer)
            if owner is None:
                continue
            first = groups.setdefault((owner, acl.group), item.path)
            consumer = self.r.consumers.names[owner] or ""
            if first != item.path:
                where = format_path(first)
                message = f'duplicate acl group "{acl.group}" for consumer "{consumer}" (first at {where})'
                self.log.add((*item.path, "group"), message)
                continue
            self.owned.setdefault(owner, _Owned()).acls.append(
                Acl(**_fields(acl, AclFields), consumer=consumer, source_path=item.path)
            )

    @property
    def d(self) -> Declarations:
        return self.r.d
