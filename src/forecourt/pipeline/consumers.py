"""Consumers as the plugins see them: who a request belongs to once it is authenticated."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Consumer:
    """A consumer; `groups` are its ACL groups."""

    id: str
    username: str | None
    custom_id: str | None
    groups: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.username or self.custom_id or self.id


@dataclass(frozen=True, slots=True)
class Credential:
    """A credential that identified a consumer (key-auth key, JWT secret, ...)."""

    kind: str
    id: str
    consumer: Consumer
    key: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ConsumerIndex:
    """Consumers and credentials of one config, indexed for lookups on the request path."""

    by_id: dict[str, Consumer] = field(default_factory=dict)
    by_name: dict[str, Consumer] = field(default_factory=dict)
    credentials: dict[str, dict[str, Credential]] = field(default_factory=dict)

    def add(self, consumer: Consumer) -> None:
        self.by_id[consumer.id] = consumer
        self.by_name[consumer.name] = consumer
        if consumer.username:
            self.by_name[consumer.username] = consumer

    def add_credential(self, credential: Credential) -> None:
        self.credentials.setdefault(credential.kind, {})[credential.key] = credential

    def find(self, name_or_id: str) -> Consumer | None:
        return self.by_name.get(name_or_id) or self.by_id.get(name_or_id)

    def credential(self, kind: str, key: str) -> Credential | None:
        table = self.credentials.get(kind)
        return table.get(key) if table else None
