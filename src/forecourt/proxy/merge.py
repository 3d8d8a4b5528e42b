"""Shaping one backend's JSON answer (`deny`, `allow`, `mapping`) and merging answers into one object.

Field paths are dotted (`profile.address.city`) and compiled once into trees at config load. A step
into a list applies to each object in it, so `allow: [items.sku]` keeps the `sku` of every item and
a top-level array answer is shaped element by element. Values that are not objects are left as they
are: there is nothing to filter in a string or a number.

Order, as in KrakenD: `deny` or `allow` first (they name the backend's own fields), then `mapping`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["FieldTree", "ResultShaper", "compile_paths", "merge_result"]

FieldTree = dict[str, "FieldTree | None"]
"""Compiled dotted paths: `{"a": {"b": None}, "c": None}` for `a.b` and `c` (None: the whole field)."""


def compile_paths(paths: Iterable[str]) -> FieldTree:
    """`["a.b", "a.c", "d"]` → `{"a": {"b": None, "c": None}, "d": None}`; a shorter path wins."""
    tree: FieldTree = {}
    for path in paths:
        node = tree
        parts = path.split(".")
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if last:
                node[part] = None
                break
            child = node.get(part, {})
            if child is None:  # an enclosing field is already named whole
                break
            node[part] = child
            node = child
    return tree


def _allow(value: Any, tree: FieldTree) -> Any:
    if isinstance(value, list):
        return [_allow(item, tree) if isinstance(item, dict) else item for item in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, sub in tree.items():
        if key in value:
            out[key] = value[key] if sub is None else _allow(value[key], sub)
    return out


def _deny(value: Any, tree: FieldTree) -> Any:
    if isinstance(value, list):
        return [_deny(item, tree) if isinstance(item, dict) else item for item in value]
    if not isinstance(value, dict):
        return value
    out = dict(value)
    for key, sub in tree.items():
        if key not in out:
            continue
        if sub is None:
            del out[key]
        else:
            out[key] = _deny(out[key], sub)
    return out


def _pop_path(document: dict[str, Any], parts: list[str]) -> tuple[bool, Any]:
    """Remove the value at `parts` from `document` (copying the objects on the way); (found, value)."""
    node: Any = document
    for part in parts[:-1]:
        if not isinstance(node, dict) or not isinstance(node.get(part), dict):
            return False, None
        copy = dict(node[part])
        node[part] = copy
        node = copy
    if not isinstance(node, dict) or parts[-1] not in node:
        return False, None
    return True, node.pop(parts[-1])


class ResultShaper:
    """One backend's `allow`/`deny` filter and `mapping` renames, compiled."""

    __slots__ = ("allow", "deny", "mapping")

    def __init__(
        self,
        allow: Iterable[str] = (),
        deny: Iterable[str] = (),
        mapping: Mapping[str, str] | None = None,
    ) -> None:
        self.allow = compile_paths(allow) or None
        self.deny = compile_paths(deny) or None
        self.mapping = tuple((old.split("."), new) for old, new in (mapping or {}).items())

    @property
    def identity(self) -> bool:
        return self.allow is None and self.deny is None and not self.mapping

    def apply(self, value: Any) -> Any:
        """The shaped copy of `value` (the input is never changed)."""
        if self.identity:
            return value
        if self.deny is not None:
            value = _deny(value, self.deny)
        if self.allow is not None:
            value = _allow(value, self.allow)
        if self.mapping:
            if isinstance(value, list):
                value = [self._rename(item) if isinstance(item, dict) else item for item in value]
            elif isinstance(value, dict):
                value = self._rename(value)
        return value

    def _rename(self, document: dict[str, Any]) -> dict[str, Any]:
        top = {parts[0]: new for parts, new in self.mapping if len(parts) == 1}
        # Top-level renames keep the field's position; nested ones are lifted to the end.
        out = {top.get(key, key): value for key, value in document.items()}
        for parts, new in self.mapping:
            if len(parts) > 1:
                found, moved = _pop_path(out, parts)
                if found:
                    out[new] = moved
        return out


def merge_result(response: dict[str, Any], key: str, value: Any) -> None:
    """Put one backend's result at `key`; two objects at the same key (a shared `group`) merge,
    the later backend's fields winning. Objects already in `response` are never changed in place
    (they may be cached answers)."""
    existing = response.get(key)
    if isinstance(existing, dict) and isinstance(value, dict):
        response[key] = {**existing, **value}
    else:
        response[key] = value
