"""Split a parsed document into its entities, validating each one on its own.

Kong lets routes and plugins nest in services, plugins in routes and consumers, targets in
upstreams and SNIs in certificates. Here every entity, nested or not, is validated separately and
recorded with the key path it came from and the entity it nests in, so one invalid entity never
hides the errors of its siblings or children.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel

from forecourt.config import rules
from forecourt.config.credentials import (
    AclEntity,
    JwtSecretEntity,
    KeyAuthCredentialEntity,
    jwt_secret_problems,
)
from forecourt.config.errors import KeyPath
from forecourt.config.schema import (
    CACertificateEntity,
    CertificateEntity,
    ConsumerEntity,
    DocumentHeader,
    PluginEntity,
    RouteEntity,
    ServiceEntity,
    SniEntity,
    TargetEntity,
    UpstreamEntity,
)
from forecourt.config.validation import IssueLog

EntityT = TypeVar("EntityT", bound=BaseModel)
ParentKind = Literal["services", "routes", "consumers", "upstreams", "certificates"]

ENTITY_KEYS = (
    "services",
    "routes",
    "upstreams",
    "targets",
    "consumers",
    "plugins",
    "certificates",
    "snis",
    "ca_certificates",
    "keyauth_credentials",
    "jwt_secrets",
    "acls",
)
CREDENTIAL_KEYS = ("keyauth_credentials", "jwt_secrets", "acls")


@dataclass(frozen=True, slots=True)
class Parent:
    """The entity another one is nested in: its kind and index in that kind's list."""

    kind: ParentKind
    index: int


@dataclass(slots=True)
class Declared(Generic[EntityT]):
    """One entity as declared and where it came from.

    `entity` is the validated model; when the entity had field errors it is a partial model
    (`valid` False) validated without the offending fields, or None when even that failed. Partial
    models still take part in reference checks, so one run reports a bad field and a dangling
    reference of the same entity. `raw` keeps the unvalidated mapping so a reference to an entity
    that could not be validated is not reported a second time.
    """

    entity: EntityT | None
    path: KeyPath
    raw: dict[str, object]
    parent: Parent | None = None
    valid: bool = True


@dataclass(slots=True)
class Declarations:
    """Every entity of a document, nested ones included, each in discovery order."""

    header: DocumentHeader | None = None
    services: list[Declared[ServiceEntity]] = field(default_factory=list)
    routes: list[Declared[RouteEntity]] = field(default_factory=list)
    upstreams: list[Declared[UpstreamEntity]] = field(default_factory=list)
    targets: list[Declared[TargetEntity]] = field(default_factory=list)
    consumers: list[Declared[ConsumerEntity]] = field(default_factory=list)
    plugins: list[Declared[PluginEntity]] = field(default_factory=list)
    certificates: list[Declared[CertificateEntity]] = field(default_factory=list)
    snis: list[Declared[SniEntity]] = field(default_factory=list)
    ca_certificates: list[Declared[CACertificateEntity]] = field(default_factory=list)
    keyauth_credentials: list[Declared[KeyAuthCredentialEntity]] = field(default_factory=list)
    jwt_secrets: list[Declared[JwtSecretEntity]] = field(default_factory=list)
    acls: list[Declared[AclEntity]] = field(default_factory=list)


def read_declarations(document: dict[str, object], log: IssueLog) -> Declarations:
    """Validate every entity of `document`, logging problems; never raises."""
    return _Reader(log).read(document)


class _Reader:
    def __init__(self, log: IssueLog) -> None:
        self.log = log
        self.out = Declarations()

    def read(self, document: dict[str, object]) -> Declarations:
        header = {key: value for key, value in document.items() if key not in ENTITY_KEYS}
        self.out.header = self.log.validate(DocumentHeader, header, ())
        for path, raw in self._items(document.get("services"), ("services",)):
            self._service(raw, path)
        for path, raw in self._items(document.get("routes"), ("routes",)):
            self._route(raw, path, None)
        for path, raw in self._items(document.get("upstreams"), ("upstreams",)):
            self._upstream(raw, path)
        for path, raw in self._items(document.get("targets"), ("targets",)):
            self._target(raw, path, None)
        for path, raw in self._items(document.get("consumers"), ("consumers",)):
            self._consumer(raw, path)
        for path, raw in self._items(document.get("plugins"), ("plugins",)):
            self._plugin(raw, path, None)
        for path, raw in self._items(document.get("certificates"), ("certificates",)):
            self._certificate(raw, path)
        for path, raw in self._items(document.get("snis"), ("snis",)):
            self._sni(raw, path, None)
        for path, raw in self._items(document.get("ca_certificates"), ("ca_certificates",)):
            self._ca_certificate(raw, path)
        for kind in CREDENTIAL_KEYS:
            for path, raw in self._items(document.get(kind), (kind,)):
                self._credential(kind, raw, path, None)
        return self.out

    # --- one method per entity kind --------------------------------------------------------------

    def _service(self, raw: object, path: KeyPath) -> None:
        body, nested = self._split(raw, path, ("routes", "plugins"))
        if body is None:
            return
        index = len(self.out.services)
        self._declare(self.out.services, ServiceEntity, body, path, problems=rules.service_problems)
        for child, item in self._items(nested.get("routes"), (*path, "routes")):
            self._route(item, child, Parent("services", index))
        for child, item in self._items(nested.get("plugins"), (*path, "plugins")):
            self._plugin(item, child, Parent("services", index))

    def _route(self, raw: object, path: KeyPath, parent: Parent | None) -> None:
        body, nested = self._split(raw, path, ("plugins",))
        if body is None:
            return
        index = len(self.out.routes)
        route = self._declare(
            self.out.routes, RouteEntity, body, path, parent=parent, problems=rules.route_problems
        )
        if route is not None and parent is not None and route.service is not None:
            self.log.add((*path, "service"), "not allowed in a route nested in a service")
        for child, item in self._items(nested.get("plugins"), (*path, "plugins")):
            self._plugin(item, child, Parent("routes", index))

    def _upstream(self, raw: object, path: KeyPath) -> None:
        body, nested = self._split(raw, path, ("targets",))
        if body is None:
            return
        index = len(self.out.upstreams)
        self._declare(self.out.upstreams, UpstreamEntity, body, path, problems=rules.upstream_problems)
        for child, item in self._items(nested.get("targets"), (*path, "targets")):
            self._target(item, child, Parent("upstreams", index))

    def _target(self, raw: object, path: KeyPath, parent: Parent | None) -> None:
        body, _ = self._split(raw, path, ())
        if body is None:
            return
        target = self._declare(self.out.targets, TargetEntity, body, path, parent=parent)
        if target is not None and parent is not None and target.upstream is not None:
            self.log.add((*path, "upstream"), "not allowed in a target nested in an upstream")

    def _consumer(self, raw: object, path: KeyPath) -> None:
        body, nested = self._split(raw, path, ("plugins", *CREDENTIAL_KEYS))
        if body is None:
            return
        index = len(self.out.consumers)
        self._declare(self.out.consumers, ConsumerEntity, body, path, problems=rules.consumer_problems)
        for child, item in self._items(nested.get("plugins"), (*path, "plugins")):
            self._plugin(item, child, Parent("consumers", index))
        for kind in CREDENTIAL_KEYS:
            for child, item in self._items(nested.get(kind), (*path, kind)):
                self._credential(kind, item, child, Parent("consumers", index))

    def _credential(self, kind: str, raw: object, path: KeyPath, parent: Parent | None) -> None:
        body, _ = self._split(raw, path, ())
        if body is None:
            return
        entity: KeyAuthCredentialEntity | JwtSecretEntity | AclEntity | None
        if kind == "keyauth_credentials":
            entity = self._declare(
                self.out.keyauth_credentials, KeyAuthCredentialEntity, body, path, parent=parent
            )
        elif kind == "jwt_secrets":
            entity = self._declare(
                self.out.jwt_secrets, JwtSecretEntity, body, path, parent=parent, problems=jwt_secret_problems
            )
        else:
            entity = self._declare(self.out.acls, AclEntity, body, path, parent=parent)
        if entity is not None and parent is not None and entity.consumer is not None:
            singular = {"keyauth_credentials": "a keyauth_credential", "jwt_secrets": "a jwt_secret"}
            self.log.add(
                (*path, "consumer"), f"not allowed in {singular.get(kind, 'an acl')} nested in a consumer"
            )

    def _plugin(self, raw: object, path: KeyPath, parent: Parent | None) -> None:
        body, _ = self._split(raw, path, ())
        if body is None:
            return
        plugin = self._declare(self.out.plugins, PluginEntity, body, path, parent=parent)
        if plugin is not None and parent is not None:
            own = {"services": "service", "routes": "route", "consumers": "consumer"}.get(parent.kind)
            if own is not None and getattr(plugin, own) is not None:
                self.log.add((*path, own), f"not allowed in a plugin nested in a {own}")

    def _certificate(self, raw: object, path: KeyPath) -> None:
        body, nested = self._split(raw, path, ("snis",))
        if body is None:
            return
        index = len(self.out.certificates)
        self._declare(
            self.out.certificates, CertificateEntity, body, path, problems=rules.certificate_problems
        )
        for child, item in self._items(nested.get("snis"), (*path, "snis")):
            self._sni(item, child, Parent("certificates", index))

    def _sni(self, raw: object, path: KeyPath, parent: Parent | None) -> None:
        if parent is not None and isinstance(raw, str):
            raw = {"name": raw}  # nested SNIs may be bare names
        body, _ = self._split(raw, path, ())
        if body is None:
            return
        sni = self._declare(self.out.snis, SniEntity, body, path, parent=parent)
        if sni is not None and parent is not None and sni.certificate is not None:
            self.log.add((*path, "certificate"), "not allowed in an SNI nested in a certificate")

    def _ca_certificate(self, raw: object, path: KeyPath) -> None:
        body, _ = self._split(raw, path, ())
        if body is not None:
            self._declare(self.out.ca_certificates, CACertificateEntity, body, path)

    # --- helpers ---------------------------------------------------------------------------------

    def _items(self, value: object, path: KeyPath) -> list[tuple[KeyPath, object]]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.log.add(path, "expected a list")
            return []
        return [((*path, index), item) for index, item in enumerate(value)]

    def _split(
        self, raw: object, path: KeyPath, nested_keys: tuple[str, ...]
    ) -> tuple[dict[str, object] | None, dict[str, object]]:
        """The entity's own fields and, separately, the arrays nested in it."""
        if not isinstance(raw, dict):
            self.log.add(path, "expected a mapping")
            return None, {}
        body = {key: value for key, value in raw.items() if key not in nested_keys}
        nested = {key: value for key, value in raw.items() if key in nested_keys}
        return body, nested

    def _declare(
        self,
        into: list[Declared[EntityT]],
        model: type[EntityT],
        body: dict[str, object],
        path: KeyPath,
        *,
        parent: Parent | None = None,
        problems: Callable[[EntityT], rules.Problems] | None = None,
    ) -> EntityT | None:
        entity, valid = self.log.validate_partial(model, body, path)
        if valid and entity is not None and problems is not None:
            for relative, message in problems(entity):
                self.log.add((*path, *relative), message)
        into.append(Declared(entity, path, body, parent, valid))
        return entity
