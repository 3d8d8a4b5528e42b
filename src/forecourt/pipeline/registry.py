"""Where plugin classes come from: bundled modules, the `forecourt.plugins` entry-point group, and
dotted paths (`package.module:Class`) given on the command line or used as a plugin `name`.

Bundled plugins are imported lazily by name, so a gateway that uses none of them imports none.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterator, Mapping
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel

from forecourt.pipeline.plugin import Plugin

# name → "module:Class" for the plugins shipped with Forecourt (Kong's names).
BUNDLED: dict[str, str] = {
    "jwt": "forecourt.plugins.jwt:JwtPlugin",
    "key-auth": "forecourt.plugins.key_auth:KeyAuthPlugin",
    "acl": "forecourt.plugins.acl:AclPlugin",
    "rate-limiting": "forecourt.plugins.rate_limiting:RateLimitingPlugin",
    "correlation-id": "forecourt.plugins.correlation_id:CorrelationIdPlugin",
    "cors": "forecourt.plugins.cors:CorsPlugin",
    "ip-restriction": "forecourt.plugins.ip_restriction:IpRestrictionPlugin",
    "request-size-limiting": "forecourt.plugins.request_size_limiting:RequestSizeLimitingPlugin",
    "request-transformer": "forecourt.plugins.request_transformer:RequestTransformerPlugin",
    "translate": "forecourt.plugins.translate:TranslatePlugin",
    "response-transformer": "forecourt.plugins.response_transformer:ResponseTransformerPlugin",
    "compression": "forecourt.plugins.compression:CompressionPlugin",
    "prometheus": "forecourt.plugins.prometheus:PrometheusPlugin",
    "opentelemetry": "forecourt.plugins.opentelemetry:OpenTelemetryPlugin",
    "proxy-cache": "forecourt.plugins.proxy_cache:ProxyCachePlugin",
}


class PluginLoadError(Exception):
    """A plugin class could not be imported or is not a Plugin."""


def load_class(path: str) -> type[Plugin[Any]]:
    """Import `module:Class` (or `module.Class`) and check it is a plugin class."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise PluginLoadError(f"{path!r} is not a 'module:Class' path")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise PluginLoadError(f"cannot load plugin {path!r}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Plugin)):
        raise PluginLoadError(f"{path!r} is not a forecourt.pipeline.Plugin subclass")
    for attribute in ("name", "priority", "Config"):
        if not hasattr(cls, attribute):
            raise PluginLoadError(f"plugin class {path!r} has no {attribute!r}")
    return cls


class PluginRegistry(Mapping[str, type[BaseModel]]):
    """Plugin name → class; as a Mapping, name → config schema (what the config loader needs).

    A name containing ':' that is not registered is imported as a dotted path on first use.
    """

    def __init__(self, extra: tuple[str, ...] = ()) -> None:
        self._paths: dict[str, str] = dict(BUNDLED)
        for ep in entry_points(group="forecourt.plugins"):
            self._paths.setdefault(ep.name, ep.value)
        self._classes: dict[str, type[Plugin[Any]]] = {}
        for path in extra:
            cls = load_class(path)
            self._classes[cls.name] = cls

    def plugin_class(self, name: str) -> type[Plugin[Any]] | None:
        cls = self._classes.get(name)
        if cls is not None:
            return cls
        path = self._paths.get(name)
        if path is None and ":" in name:
            path = name
        if path is None:
            return None
        try:
            cls = load_class(path)
        except PluginLoadError:
            if name in BUNDLED and importlib.util.find_spec(path.partition(":")[0]) is not None:
                raise  # a bundled plugin that fails to import is a bug, not an unknown name
            return None
        self._classes[name] = cls
        return cls

    def __getitem__(self, name: str) -> type[BaseModel]:
        cls = self.plugin_class(name)
        if cls is None:
            raise KeyError(name)
        return cls.Config

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(set(self._paths) | set(self._classes)))

    def __len__(self) -> int:
        return len(set(self._paths) | set(self._classes))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.plugin_class(name) is not None
