"""`POST /config`: the declarative config out of a request body, and Kong's answer when it is invalid.

Kong accepts the config as the raw body (YAML or JSON), as JSON `{"config": ...}`, or as a form field
`config` (`multipart/form-data` or `application/x-www-form-urlencoded`); so does Forecourt.

An invalid config answers Kong's error body (code 14, "invalid declarative configuration") with
`fields` nesting the messages by entity and index (`@entity` holds messages about an entity as a
whole), `flattened_errors` listing them per entity (Kong's `?flatten_errors=1` shape, always given),
plus Forecourt's own `errors`: each problem as `file:line: key.path: message`.
"""

from __future__ import annotations

import re
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qs

import orjson
import yaml

from forecourt.admin.views import redact_document
from forecourt.config import ConfigError, ConfigIssue

__all__ = ["BodyError", "config_error_body", "config_text"]

JSON = dict[str, Any]
DECLARATIVE_ERROR_CODE = 14
_ENTITY_TYPES = {
    "services": "service",
    "routes": "route",
    "upstreams": "upstream",
    "targets": "target",
    "consumers": "consumer",
    "plugins": "plugin",
    "certificates": "certificate",
    "snis": "sni",
    "ca_certificates": "ca_certificate",
}
_PATH_TOKEN = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


class BodyError(Exception):
    """The request body holds no usable config text (400)."""


def _form_field(content_type: str, body: bytes) -> str | None:
    if content_type.startswith("multipart/form-data"):
        message = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
        )
        for part in message.iter_parts():
            if part.get_param("name", header="content-disposition") == "config":
                payload = part.get_payload(decode=True)
                if isinstance(payload, bytes):
                    return payload.decode("utf-8")
        return None
    values = parse_qs(body.decode("utf-8"), keep_blank_values=True).get("config")
    return values[0] if values else None


def config_text(content_type: str, body: bytes) -> str:
    """The config text carried by a `POST /config` body; raises `BodyError`."""
    kind = content_type.split(";", 1)[0].strip().lower()
    try:
        if kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
            text = _form_field(content_type, body)
            if text is None:
                raise BodyError("expected a 'config' field holding the declarative configuration")
        else:
            text = body.decode("utf-8")
            if kind == "application/json":
                text = _unwrap_json(text)
    except UnicodeDecodeError as exc:
        raise BodyError("the declarative configuration must be UTF-8 text") from exc
    if not text.strip():
        raise BodyError("expected a declarative configuration")
    return text


def _unwrap_json(text: str) -> str:
    """`{"config": "<yaml>"}` or `{"config": {...}}` → the config; any other JSON is the config."""
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text  # let the config parser report it, with a line number
    if isinstance(document, dict) and set(document) == {"config"}:
        inner = document["config"]
        if isinstance(inner, str):
            return inner
        return orjson.dumps(inner, option=orjson.OPT_INDENT_2).decode()
    return text


# ---------------------------------------------------------------------------------- errors


def _parse_path(path: str) -> list[str | int]:
    return [int(index) if index else name for index, name in _PATH_TOKEN.findall(path)]


def _format_field(parts: list[str | int]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _nest(issues: list[ConfigIssue]) -> JSON:
    """Messages nested by key path, like Kong's `fields`."""
    root: dict[Any, Any] = {}
    for issue in issues:
        parts = _parse_path(issue.path)
        node = root
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                messages = child if isinstance(child, list) else [child] if child is not None else []
                child = {"@entity": messages} if messages else {}
                node[part] = child
            node = child
        leaf: Any = parts[-1] if parts else "@entity"
        existing = node.get(leaf)
        if isinstance(existing, dict):
            existing.setdefault("@entity", []).append(issue.message)
        elif existing is None:
            node[leaf] = [issue.message] if leaf == "@entity" else issue.message
        elif isinstance(existing, list):
            existing.append(issue.message)
        else:
            node[leaf] = [existing, issue.message]
    nested: JSON = _listify(root)
    return nested


def _listify(node: Any) -> Any:
    """Index-keyed mappings become arrays when dense from 0, else objects keyed by index text."""
    if not isinstance(node, dict):
        return node
    items = {key: _listify(value) for key, value in node.items()}
    keys = list(items)
    if keys and all(isinstance(k, int) for k in keys):
        if sorted(keys) == list(range(len(keys))):
            return [items[k] for k in range(len(keys))]
        return {str(k): items[k] for k in sorted(keys)}
    return {str(k): v for k, v in items.items()}


def _flatten(issues: list[ConfigIssue], document: Any) -> list[JSON]:
    """Kong's `flattened_errors`: one entry per entity with errors, each error `field` or `entity`."""
    entries: dict[tuple[str | int, ...], JSON] = {}
    for issue in issues:
        parts = _parse_path(issue.path)
        cut = -1
        for i in range(len(parts) - 1):
            part = parts[i]
            if isinstance(part, str) and part in _ENTITY_TYPES and isinstance(parts[i + 1], int):
                cut = i + 2
        if cut < 0:
            continue
        key = tuple(parts[:cut])
        entry = entries.get(key)
        if entry is None:
            raw = _lookup(document, parts[:cut])
            # Nested entities are entries of their own, as in Kong's flattened errors.
            entity = {
                k: v
                for k, v in (redact_document(raw) if isinstance(raw, dict) else {}).items()
                if k not in _ENTITY_TYPES
            }
            entry = {
                "entity_type": _ENTITY_TYPES[str(parts[cut - 2])],
                "entity_path": _format_field(list(key)),
                "entity_name": entity.get("name") or entity.get("username"),
                "entity_id": entity.get("id"),
                "entity_tags": entity.get("tags"),
                "entity": entity,
                "errors": [],
            }
            entries[key] = entry
        field = _format_field(parts[cut:])
        error: JSON = {"type": "field", "field": field} if field else {"type": "entity"}
        error["message"] = issue.message
        error["source"] = str(issue)
        entry["errors"].append(error)
    return list(entries.values())


def _lookup(document: Any, parts: list[str | int]) -> Any:
    node = document
    for part in parts:
        if isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node):
            node = node[part]
        elif isinstance(part, str) and isinstance(node, dict):
            node = node.get(part)
        else:
            return None
    return node


def config_error_body(error: ConfigError, text: str) -> JSON:
    """Kong's 400 body for an invalid declarative config, plus our `file:line` list."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        document = None
    issues = error.issues
    lines = [str(issue) for issue in issues]
    return {
        "code": DECLARATIVE_ERROR_CODE,
        "name": "invalid declarative configuration",
        "message": "declarative config is invalid: " + "; ".join(lines),
        "fields": _nest(issues),
        "flattened_errors": _flatten(issues, document),
        "errors": lines,
    }
