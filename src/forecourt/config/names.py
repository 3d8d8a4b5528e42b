"""Names and ids of one entity kind: uniqueness, generated names, and reference lookup.

Kong references entities by name (its endpoint key) or id. Unnamed services, routes and consumers
are legal, so each gets a stable generated name (`service-0`, `route-3`) that later stages can use
as a key; generated names never collide with names written in the file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from pydantic import BaseModel

from forecourt.config.document import Declared
from forecourt.config.errors import format_path
from forecourt.config.schema import Reference
from forecourt.config.validation import IssueLog

EntityT = TypeVar("EntityT", bound=BaseModel)


class NameTable(Generic[EntityT]):
    """The final name of every declared entity of one kind, and lookups by name or id.

    `names[i]` belongs to `declared[i]`; it is None for an entity that failed validation. Names and
    ids of such entities are remembered so that a reference to them is not reported a second time.
    """

    def __init__(
        self,
        kind: str,
        declared: Sequence[Declared[EntityT]],
        log: IssueLog,
        *,
        name_field: str | None,
        prefix: str | None = None,
        order: Sequence[int] | None = None,
    ) -> None:
        self.kind = kind
        self._log = log
        self._by_name: dict[str, str] = {}
        self._by_id: dict[str, str] = {}
        self._unchecked: set[str] = set()
        self.names: list[str | None] = [None] * len(declared)
        first_at: dict[str, str] = {}
        ids_at: dict[str, str] = {}
        for index in order if order is not None else range(len(declared)):
            item = declared[index]
            if item.entity is None:
                self._remember_invalid(item.raw, name_field)
                continue
            entity_id = _text(getattr(item.entity, "id", None))
            if entity_id is not None:
                if entity_id in ids_at:
                    log.add(
                        (*item.path, "id"),
                        f'duplicate {kind} id "{entity_id}" (first at {ids_at[entity_id]})',
                    )
                ids_at.setdefault(entity_id, format_path(item.path))
            name = _text(getattr(item.entity, name_field, None)) if name_field else None
            if name is not None:
                if name in first_at:
                    log.add(
                        (*item.path, name_field or "name"),
                        f'duplicate {kind} name "{name}" (first at {first_at[name]})',
                    )
                first_at.setdefault(name, format_path(item.path))
                self.names[index] = name
        self._generate(declared, prefix, order, set(first_at))
        for index, item in enumerate(declared):
            final = self.names[index]
            if final is None:
                continue
            name = _text(getattr(item.entity, name_field, None)) if name_field else None
            if name is not None:
                self._by_name.setdefault(name, final)
            entity_id = _text(getattr(item.entity, "id", None))
            if entity_id is not None:
                self._by_id.setdefault(entity_id, final)

    def _generate(
        self,
        declared: Sequence[Declared[EntityT]],
        prefix: str | None,
        order: Sequence[int] | None,
        taken: set[str],
    ) -> None:
        for position, index in enumerate(order if order is not None else range(len(declared))):
            if self.names[index] is not None or declared[index].entity is None:
                continue
            entity_id = _text(getattr(declared[index].entity, "id", None))
            if prefix is None:
                self.names[index] = entity_id  # kinds without names (certificates) go by id
                continue
            candidate, suffix = f"{prefix}-{position}", 1
            while candidate in taken:
                candidate, suffix = f"{prefix}-{position}-{suffix}", suffix + 1
            taken.add(candidate)
            self.names[index] = candidate

    def _remember_invalid(self, raw: dict[str, object], name_field: str | None) -> None:
        for key in ("id", name_field):
            value = raw.get(key) if key else None
            if isinstance(value, str):
                self._unchecked.add(value)

    def resolve(self, reference: Reference, path: tuple[str | int, ...]) -> str | None:
        """The final name `reference` points at, or None after logging a dangling reference."""
        if reference.id is not None:
            found = self._by_id.get(reference.id)
            key, how = reference.id, "with id"
        else:
            assert reference.name is not None
            found = self._by_name.get(reference.name) or self._by_id.get(reference.name)
            key, how = reference.name, "named"
        if found is None and key not in self._unchecked:
            self._log.add(path, f'no {self.kind} {how} "{key}"')
        return found

    def has_id(self, entity_id: str) -> bool:
        return entity_id in self._by_id or entity_id in self._unchecked


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def unique(
    log: IssueLog,
    kind: str,
    declared: Sequence[Declared[EntityT]],
    field: str,
    value_of: Callable[[EntityT], str | None],
) -> None:
    """Log every entity whose `field` repeats an earlier entity's value."""
    first_at: dict[str, str] = {}
    for item in declared:
        value = value_of(item.entity) if item.entity is not None else None
        if value is None:
            continue
        if value in first_at:
            log.add((*item.path, field), f'duplicate {kind} {field} "{value}" (first at {first_at[value]})')
        first_at.setdefault(value, format_path(item.path))
