"""The admin API of `proxy-cache` (Kong's `kong/plugins/proxy-cache/api.lua` endpoints).

    DELETE /proxy-cache                               purge every proxy-cache store → 204
    GET    /proxy-cache/{cache_key}                   the entry, from the first store holding it
    DELETE /proxy-cache/{cache_key}                   purge the key from every store → 204 / 404
    GET    /proxy-cache/{plugin_id}/caches/{cache_key}    the same, for one plugin instance
    DELETE /proxy-cache/{plugin_id}/caches/{cache_key}

Per worker: with the `memory` strategy each worker process has its own store, and the admin
request is answered by one worker. Purges therefore also go to the run's purge log (purge.py),
which every worker applies at its next lookup. A GET only sees the answering worker's store, and
a DELETE of a key this worker does not hold still answers 204 when there are other workers (it
cannot tell that none of them holds it). With `redis` every worker sees the same entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from forecourt.admin.server import AdminResponse
from forecourt.plugins.proxy_cache.plugin import ProxyCachePlugin
from forecourt.plugins.proxy_cache.stores import CacheStore, Entry, StoreError, VaryIndex

if TYPE_CHECKING:
    from forecourt.admin.views import EntityViews
    from forecourt.config import GatewayConfig
    from forecourt.plan import Plan

__all__ = ["cache_plugins", "handle", "render_entry"]

_NOT_FOUND = AdminResponse.message(404, "Not found")


def cache_plugins(
    config: GatewayConfig, plan: Plan, views: EntityViews
) -> list[tuple[str, ProxyCachePlugin]]:
    """(admin plugin id, instance) of every proxy-cache plugin the plan runs.

    The plan builds one instance per enabled plugin entry, in config order.
    """
    enabled = [(index, entry) for index, entry in enumerate(config.plugins) if entry.enabled]
    found: list[tuple[str, ProxyCachePlugin]] = []
    for (index, entry), instance in zip(enabled, plan.plugins, strict=False):
        if isinstance(instance, ProxyCachePlugin):
            found.append((views.plugin_id(index, entry), instance))
    return found


def _stores(plugins: Sequence[ProxyCachePlugin]) -> list[CacheStore]:
    stores: list[CacheStore] = []
    for plugin in plugins:
        store = plugin.store
        if all(store is not seen for seen in stores):
            stores.append(store)
    return stores


def render_entry(key: str, entry: Entry) -> dict[str, Any]:
    """An entry as Kong's GET shows one (status, headers, body, body_len, timestamp, ttl, version)."""
    if isinstance(entry, VaryIndex):
        return {
            "key": key,
            "vary": [name.decode("latin-1") for name in entry.names],
            "timestamp": int(entry.timestamp),
        }
    headers: dict[str, Any] = {}
    for raw_name, raw_value in entry.headers:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        current = headers.get(name)
        if current is None:
            headers[name] = value
        elif isinstance(current, list):
            current.append(value)
        else:
            headers[name] = [current, value]
    return {
        "key": key,
        "status": entry.status,
        "headers": headers,
        "body": entry.body.decode("utf-8", "replace"),
        "body_len": len(entry.body),
        "timestamp": int(entry.timestamp),
        "ttl": entry.ttl,
        "stale_if_error": entry.stale_if_error,
        "version": entry.version,
    }


async def handle(
    method: str, args: Sequence[str], plugins: Sequence[tuple[str, ProxyCachePlugin]], *, workers: int = 1
) -> AdminResponse:
    """Answer one `/proxy-cache...` admin request (`args`: the path's `{...}` parts)."""
    if len(args) == 2:
        chosen = [plugin for plugin_id, plugin in plugins if plugin_id == args[0]]
        if not chosen:
            return _NOT_FOUND
        instances = chosen
        key: str | None = args[1]
    else:
        instances = [plugin for _, plugin in plugins]
        key = args[0] if args else None
    try:
        stores = _stores(instances)
        if key is None:
            for store in stores:
                await store.purge()
            return AdminResponse(204, content_type="")
        if method in ("GET", "HEAD"):
            for store in stores:
                entry = await store.inspect(key)
                if entry is not None:
                    return AdminResponse.json(200, render_entry(key, entry))
            return _NOT_FOUND
        found = False
        for store in stores:
            found = await store.delete(key) or found
        elsewhere = workers > 1 and any(store.kind == "memory" for store in stores)
        return AdminResponse(204, content_type="") if found or elsewhere else _NOT_FOUND
    except StoreError as exc:
        return AdminResponse.message(500, str(exc))
