"""Config entities rendered as Kong's Admin API JSON objects.

Fields keep Kong's names and Kong's way of showing "unset": an empty array field of a route is
`null`, a foreign key is `{"id": ...}`. Entities declared without an `id` get a stable one (UUID v5
of the gateway, kind and name), so ids survive reloads and `/services/{id}` keeps working.

Secrets never leave the process: certificates lose `key`/`key_alt`, and plugin config fields whose
names say they hold a secret (`password`, `secret`, `private_key`, `token`, ...) are replaced by
`"<redacted>"`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from forecourt.config import (
    Certificate,
    Consumer,
    GatewayConfig,
    PluginConfig,
    Route,
    Service,
    Target,
    Upstream,
)

__all__ = ["REDACTED", "EntityViews", "entity_id", "redact", "redact_document"]

JSON = dict[str, Any]
REDACTED = "<redacted>"
_NAMESPACE = uuid.UUID("5d2a4f0e-6a3b-4d7c-9a57-2f0c1e3b8a90")
_SECRET_FIELD = re.compile(r"(password|passwd|secret|private_key|api_key|token|credential)s?$", re.IGNORECASE)
_ROUTE_NULL_WHEN_EMPTY = ("methods", "hosts", "paths", "headers", "snis")
_INTERNAL = {"source_path"}


def entity_id(gateway: str, kind: str, key: str, configured: str | None = None) -> str:
    """The entity's configured id, or a stable UUID derived from where it is declared."""
    if configured:
        return configured
    return str(uuid.uuid5(_NAMESPACE, f"{gateway}/{kind}/{key}"))


def redact(value: Any) -> Any:
    """`value` with every secret-looking mapping field replaced by `REDACTED`."""
    if isinstance(value, Mapping):
        return {
            key: REDACTED if _SECRET_FIELD.search(str(key)) and item not in (None, "") else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def _dump(model: BaseModel, exclude: set[str]) -> JSON:
    return model.model_dump(mode="json", exclude=exclude | _INTERNAL)


def _tags(data: JSON) -> None:
    if not data.get("tags"):
        data["tags"] = None


@dataclass(slots=True)
class EntityViews:
    """Renders one gateway's entities; `created_at` is when its active config was loaded."""

    gateway: str
    config: GatewayConfig
    created_at: int

    # ------------------------------------------------------------------ ids
    def service_id(self, service: Service) -> str:
        return entity_id(self.gateway, "services", service.name, service.id)

    def route_id(self, route: Route) -> str:
        return entity_id(self.gateway, "routes", route.name, route.id)

    def upstream_id(self, upstream: Upstream) -> str:
        return entity_id(self.gateway, "upstreams", upstream.name, upstream.id)

    def target_id(self, target: Target) -> str:
        return entity_id(self.gateway, "targets", f"{target.upstream}/{target.target}", target.id)

    def consumer_id(self, consumer: Consumer) -> str:
        return entity_id(self.gateway, "consumers", consumer.name, consumer.id)

    def certificate_id(self, index: int, certificate: Certificate) -> str:
        return entity_id(self.gateway, "certificates", str(index), certificate.id)

    def plugin_id(self, index: int, plugin: PluginConfig) -> str:
        return entity_id(self.gateway, "plugins", plugin.instance_name or str(index), plugin.id)

    def _stamp(self, data: JSON, entity_id_: str) -> JSON:
        data["id"] = entity_id_
        data["created_at"] = self.created_at
        data["updated_at"] = self.created_at
        _tags(data)
        return data

    def _ref(self, kind: str, name: str | None) -> JSON | None:
        """`{"id": ...}` of the entity of `kind` called `name` (Kong's foreign-key shape)."""
        if name is None:
            return None
        config = self.config
        if kind == "services":
            found = next((s for s in config.services if s.name == name), None)
            return {"id": self.service_id(found)} if found else None
        if kind == "routes":
            route = next((r for r in config.routes if r.name == name), None)
            return {"id": self.route_id(route)} if route else None
        if kind == "upstreams":
            upstream = next((u for u in config.upstreams if u.name == name), None)
            return {"id": self.upstream_id(upstream)} if upstream else None
        consumer = next((c for c in config.consumers if c.name == name), None)
        return {"id": self.consumer_id(consumer)} if consumer else None

    # ------------------------------------------------------------------ entities
    def service(self, service: Service) -> JSON:
        data = _dump(service, {"client_certificate"})
        data["client_certificate"] = (
            {"id": service.client_certificate} if service.client_certificate is not None else None
        )
        return self._stamp(data, self.service_id(service))

    def route(self, route: Route) -> JSON:
        data = _dump(route, {"service"})
        for key in _ROUTE_NULL_WHEN_EMPTY:
            if not data.get(key):
                data[key] = None
        data.setdefault("sources", None)
        data.setdefault("destinations", None)
        data["service"] = self._ref("services", route.service)
        return self._stamp(data, self.route_id(route))

    def upstream(self, upstream: Upstream) -> JSON:
        data = _dump(upstream, {"targets", "client_certificate"})
        data["client_certificate"] = (
            {"id": upstream.client_certificate} if upstream.client_certificate is not None else None
        )
        return self._stamp(data, self.upstream_id(upstream))

    def target(self, target: Target) -> JSON:
        data = _dump(target, {"host", "port", "upstream"})
        data["upstream"] = self._ref("upstreams", target.upstream)
        return self._stamp(data, self.target_id(target))

    def consumer(self, consumer: Consumer) -> JSON:
        data = _dump(consumer, {"name"})
        return self._stamp(data, self.consumer_id(consumer))

    def certificate(self, index: int, certificate: Certificate) -> JSON:
        data = _dump(certificate, {"key", "key_alt"})
        data["snis"] = list(certificate.snis)
        return self._stamp(data, self.certificate_id(index, certificate))

    def plugin(self, index: int, plugin: PluginConfig) -> JSON:
        data = _dump(plugin, {"config", "route", "service", "consumer"})
        data["config"] = redact(plugin.config.model_dump(mode="json"))
        data["route"] = self._ref("routes", plugin.route)
        data["service"] = self._ref("services", plugin.service)
        data["consumer"] = self._ref("consumers", plugin.consumer)
        return self._stamp(data, self.plugin_id(index, plugin))


_CREDENTIAL_LISTS = ("keyauth_credentials", "jwt_secrets", "basicauth_credentials", "hmacauth_credentials")
_CREDENTIAL_FIELDS = frozenset({"key", "secret", "password", "rsa_private_key"})


def redact_document(value: Any, parent: str = "") -> Any:
    """A declarative document (or a part of it) with private keys and credentials replaced.

    Certificates lose `key`/`key_alt`; consumer credentials lose their secret fields; any
    secret-looking field anywhere (plugin configs) is redacted as by `redact`.
    """
    if isinstance(value, list):
        return [redact_document(item, parent) for item in value]
    if not isinstance(value, Mapping):
        return value
    is_certificate = "cert" in value and parent in ("certificates", "")
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = str(key)
        secret = (
            (is_certificate and name in ("key", "key_alt"))
            or (parent in _CREDENTIAL_LISTS and name in _CREDENTIAL_FIELDS)
            or (name not in _CREDENTIAL_LISTS and bool(_SECRET_FIELD.search(name)))
        )
        if secret and item not in (None, ""):
            out[name] = REDACTED
        else:
            out[name] = redact_document(item, name)
    return out
