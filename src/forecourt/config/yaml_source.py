"""YAML/JSON text → plain Python data plus a key path → line map.

PyYAML's `safe_load` throws line numbers away and silently keeps the last of duplicate keys, so we
compose the node tree ourselves and walk it: every mapping key and list item records the line it
starts on, duplicate keys become errors, and scalars are still typed by the safe constructor.
JSON is parsed through the same path (JSON is, for config purposes, a subset of YAML) so JSON files
get line numbers too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from forecourt.config.errors import ConfigError, ConfigIssue, KeyPath, format_path
from forecourt.config.source import ConfigSource

_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
# JSON numbers that YAML 1.1 would read as strings (for instance `1e5`).
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")


@dataclass(frozen=True, slots=True)
class SourceDocument:
    """A parsed document: its data, where each value came from, and non-fatal problems found."""

    data: object
    source: ConfigSource
    issues: list[ConfigIssue]


def read_document(text: str, filename: str) -> SourceDocument:
    """Parse `text` (YAML or JSON) into data and a line map.

    Raises `ConfigError` when nothing usable comes out: a syntax error, an empty file, or a
    top level that is not a mapping. Duplicate keys are reported in `issues` (the last one wins
    meanwhile) so the rest of the file can still be checked.
    """
    json_mode = filename.lower().endswith(".json")
    if json_mode:
        # JSON allows tabs between tokens, YAML does not; inside valid JSON strings tabs are escaped,
        # so replacing raw ones changes no value and keeps every line where it was.
        text = text.replace("\t", " ")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        raise ConfigError([_syntax_issue(filename, exc)]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigIssue(filename, None, "", f"invalid YAML: {exc}")]) from exc
    if root is None:
        raise ConfigError(
            [ConfigIssue(filename, 1, "", "file is empty: expected a mapping with services, routes, ...")]
        )
    walker = _NodeWalker(filename, json_mode)
    data = walker.walk(root, ())
    source = ConfigSource(filename, walker.lines)
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a {type(data).__name__}"
        raise ConfigError([source.issue((), f"top level must be a mapping, not {kind}")])
    return SourceDocument(data, source, walker.issues)


def _syntax_issue(filename: str, exc: yaml.MarkedYAMLError) -> ConfigIssue:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else None
    parts = [part for part in (exc.context, exc.problem) if part]
    detail = ", ".join(parts) if parts else "syntax error"
    return ConfigIssue(filename, line, "", f"invalid YAML: {detail}")


class _NodeWalker:
    """Turns a composed node tree into dicts, lists and scalars, recording lines on the way."""

    def __init__(self, filename: str, json_mode: bool) -> None:
        self.filename = filename
        self.json_mode = json_mode
        self.lines: dict[KeyPath, int] = {}
        self.issues: list[ConfigIssue] = []
        self._constructor = SafeConstructor()
        self._active: set[int] = set()  # nodes being walked, to catch self-referencing aliases

    def walk(self, node: Node, path: KeyPath) -> object:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if id(node) in self._active:
            self._report(path, node, "recursive YAML alias")
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, MappingNode):
                return self._walk_mapping(node, path)
            if isinstance(node, SequenceNode):
                return [self.walk(item, (*path, index)) for index, item in enumerate(node.value)]
            return self._scalar(node)
        finally:
            self._active.discard(id(node))

    def _walk_mapping(self, node: MappingNode, path: KeyPath) -> dict[str, object]:
        # Merged mappings (`<<: *defaults`) are walked first so that the keys written here
        # override both their values and their lines.
        merged: dict[str, object] = {}
        for source in self._merge_sources(node, path):
            for merged_key, merged_value in source.items():
                merged.setdefault(merged_key, merged_value)
        result: dict[str, object] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self._key(key_node, path)
            if key is None:
                continue
            child = (*path, key)
            if key in result:
                self._report(child, key_node, f'duplicate key "{key}"')
            self.lines[child] = key_node.start_mark.line + 1
            result[key] = self.walk(value_node, child)
        return {**merged, **result}

    def _merge_sources(self, node: MappingNode, path: KeyPath) -> list[dict[str, object]]:
        """Mappings pulled in with YAML merge keys, earliest (highest precedence) first."""
        sources: list[dict[str, object]] = []
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE_TAG:
                continue
            nodes = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
            for merged_node in nodes:
                if not isinstance(merged_node, MappingNode):
                    self._report(path, merged_node, "a merge key (<<) needs a mapping or a list of mappings")
                    continue
                sources.append(self._walk_mapping(merged_node, path))
        return sources

    def _key(self, key_node: Node, path: KeyPath) -> str | None:
        if not isinstance(key_node, ScalarNode):
            self._report(path, key_node, "mapping keys must be plain strings")
            return None
        # Keys are names; use the text as written so `200:` or `on:` do not turn into an int or a bool.
        return str(key_node.value)

    def _scalar(self, node: Node) -> object:
        if (
            self.json_mode
            and isinstance(node, ScalarNode)
            and node.style is None
            and node.tag == _STR_TAG
            and _JSON_NUMBER.fullmatch(node.value)
        ):
            number = float(node.value)
            return int(number) if number.is_integer() and "." not in node.value else number
        return self._constructor.construct_object(node, deep=True)

    def _report(self, path: KeyPath, node: Node, message: str) -> None:
        self.issues.append(ConfigIssue(self.filename, node.start_mark.line + 1, format_path(path), message))
