"""`proxy-cache`: Kong's response cache (docs/plugins/proxy-cache.md).

Modules: `config` (schema), `key` (cache keys), `policy` (what may be stored, for how long),
`stores` (memory and Redis), `coalesce` (one upstream fetch per key), `purge` (purges across
worker processes), `plugin` (the phases), `api` (admin endpoints).
"""

from forecourt.plugins.proxy_cache.config import ProxyCacheConfig
from forecourt.plugins.proxy_cache.plugin import CacheStatus, ProxyCachePlugin

__all__ = ["CacheStatus", "ProxyCacheConfig", "ProxyCachePlugin"]
