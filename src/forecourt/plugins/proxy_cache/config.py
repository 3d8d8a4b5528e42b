"""The `proxy-cache` config schema: Kong 3.x's fields and defaults, plus Forecourt's additions.

Kong's fields: `response_code`, `request_method`, `content_type`, `cache_ttl`, `strategy`,
`cache_control`, `ignore_uri_case`, `storage_ttl`, `memory.dictionary_name`, `vary_query_params`,
`vary_headers`, `response_headers.{age, X-Cache-Status, X-Cache-Key}`. Forecourt adds
`memory.max_bytes`, the `redis` record (Kong's shared Redis schema), `cache_authorized`,
`stale_if_error`, `max_object_bytes`, `coalesce` and `coalesce_timeout` (docs/plugins/proxy-cache.md).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, field_validator

from forecourt.pipeline import PluginConfig
from forecourt.plugins.proxy_cache.policy import parse_media_type
from forecourt.plugins.redis_config import RedisConfig

__all__ = [
    "CacheMethod",
    "MemoryConfig",
    "ProxyCacheConfig",
    "RedisConfig",
    "ResponseHeadersConfig",
]

CacheMethod = Literal["HEAD", "GET", "POST", "PATCH", "PUT"]
StatusCode = Annotated[int, Field(ge=100, le=900)]
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_OBJECT_BYTES = 1024 * 1024


class MemoryConfig(PluginConfig):
    """Kong's `config.memory`, plus the byte bound Forecourt's memory store needs."""

    dictionary_name: str = Field(
        "kong_db_cache",
        min_length=1,
        description="Name of the in-memory store; plugins naming the same one share it.",
    )
    max_bytes: int = Field(
        DEFAULT_MAX_BYTES,
        ge=1024,
        description="Bytes the store may hold (per worker process); least recently used entries go first.",
    )


class ResponseHeadersConfig(PluginConfig):
    """Kong's `config.response_headers`: which cache headers responses carry."""

    model_config = ConfigDict(extra="forbid", frozen=True, serialize_by_alias=True)

    age: bool = Field(True, description="`Age` on responses served from the cache.")
    x_cache_status: bool = Field(True, alias="X-Cache-Status", description="`X-Cache-Status` on responses.")
    x_cache_key: bool = Field(True, alias="X-Cache-Key", description="`X-Cache-Key` on responses.")


class ProxyCacheConfig(PluginConfig):
    """Kong 3.x `proxy-cache` config, with Forecourt's additions."""

    response_code: tuple[StatusCode, ...] = Field(
        (200, 301, 404), min_length=1, description="Upstream statuses considered cacheable."
    )
    request_method: tuple[CacheMethod, ...] = Field(
        ("GET", "HEAD"), min_length=1, description="Request methods considered cacheable."
    )
    content_type: tuple[str, ...] = Field(
        ("text/plain", "application/json"),
        min_length=1,
        description="Cacheable response media types: `type/subtype`, `type/*` or `*/*`, parameters exact.",
    )
    cache_ttl: int = Field(300, gt=0, description="Seconds a response stays fresh (without cache_control).")
    strategy: Literal["memory", "redis"] = Field("memory", description="Where responses are stored.")
    cache_control: bool = Field(
        False, description="Honour Cache-Control in requests and responses (RFC 9111)."
    )
    ignore_uri_case: bool = Field(False, description="Lower-case the path in the cache key.")
    storage_ttl: int | None = Field(
        None, ge=0, description="Seconds entries are kept in the store, independent of freshness."
    )
    memory: MemoryConfig = Field(default_factory=MemoryConfig, description="Strategy `memory` settings.")
    redis: RedisConfig = Field(default_factory=RedisConfig, description="Strategy `redis` settings.")
    vary_query_params: tuple[str, ...] | None = Field(
        None, description="Query parameters in the cache key (all of them when unset)."
    )
    vary_headers: tuple[str, ...] | None = Field(
        None, description="Request headers in the cache key (none when unset)."
    )
    response_headers: ResponseHeadersConfig = Field(
        default_factory=ResponseHeadersConfig, description="Which cache headers responses carry."
    )
    # Forecourt additions.
    cache_authorized: Literal[False, "per_consumer"] = Field(
        False,
        description="Requests with Authorization: `false` bypasses the cache; `per_consumer` caches "
        "them under the authenticated consumer's own keys (bypassing when no consumer is known).",
    )
    stale_if_error: int = Field(
        0,
        ge=0,
        description="Seconds past freshness a stored response may answer when the upstream fails "
        "(a response's own `stale-if-error` directive wins with cache_control).",
    )
    max_object_bytes: int = Field(
        DEFAULT_MAX_OBJECT_BYTES, ge=1, description="Largest response body stored; larger ones are not."
    )
    coalesce: bool = Field(True, description="One upstream request per cache key at a time (others wait).")
    coalesce_timeout: int = Field(
        5000, ge=1, description="Milliseconds a request waits for another's upstream response."
    )

    @field_validator("content_type")
    @classmethod
    def _media_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if parse_media_type(item) is None:
                raise ValueError(f"invalid media type {item!r} (expected type/subtype[; parameters])")
        return value

    @field_validator("vary_headers")
    @classmethod
    def _header_names(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None:
            for name in value:
                if not name or any(c in name for c in " \t\r\n:"):
                    raise ValueError(f"invalid header name {name!r}")
        return value
