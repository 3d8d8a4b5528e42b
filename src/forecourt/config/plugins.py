"""Plugin checks that need more than the plugin entity: its config schema and its scope.

Plugins are pluggable, so their config schemas come from the caller (`plugin_schemas`, the
plugin registry's name → pydantic model map) rather than from this package. A plugin name without
a schema is an error: Forecourt never silently ignores a plugin it cannot run.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ValidationError

from forecourt.config.errors import KeyPath, format_path
from forecourt.config.schema import PluginEntity
from forecourt.config.validation import IssueLog

PluginSchemas = Mapping[str, type[BaseModel]]
Scope = tuple[str | None, str | None, str | None]
"""A plugin's (route, service, consumer) names; Kong allows one plugin per name per scope."""


def validate_plugin_config(
    plugin: PluginEntity, path: KeyPath, schemas: PluginSchemas, log: IssueLog
) -> BaseModel | None:
    """The plugin's config validated by its schema, or None after logging why not."""
    schema = schemas.get(plugin.name)
    if schema is None:
        log.add((*path, "name"), f'unknown plugin "{plugin.name}"')
        return None
    try:
        return schema.model_validate(plugin.config)
    except ValidationError as exc:
        log.add_validation_errors(exc, (*path, "config"))
        return None


class ScopeRegistry:
    """Detects a second plugin of the same name on the same route/service/consumer combination."""

    def __init__(self, log: IssueLog) -> None:
        self._log = log
        self._seen: dict[tuple[str, Scope], KeyPath] = {}
        self._instances: dict[str, KeyPath] = {}

    def add(self, plugin: PluginEntity, scope: Scope, path: KeyPath) -> None:
        key = (plugin.name, scope)
        first = self._seen.setdefault(key, path)
        if first != path:
            self._log.add(
                path,
                f'duplicate plugin "{plugin.name}" for {_describe(scope)} (first at {format_path(first)})',
            )
        if plugin.instance_name is not None:
            name = plugin.instance_name
            first = self._instances.setdefault(name, path)
            if first != path:
                self._log.add(
                    (*path, "instance_name"),
                    f'duplicate plugin instance_name "{name}" (first at {format_path(first)})',
                )


def _describe(scope: Scope) -> str:
    route, service, consumer = scope
    parts = [
        f'{kind} "{name}"'
        for kind, name in (("route", route), ("service", service), ("consumer", consumer))
        if name is not None
    ]
    return " and ".join(parts) if parts else "the global scope"
