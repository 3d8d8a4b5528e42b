"""The `rate-limiting` plugin's config (Kong's fields), apart from the plugin itself.

The plugin (`plugins.rate_limiting`) runs on every request and is compiled with mypyc; pydantic
models cannot be, so the schema lives here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from forecourt.pipeline.plugin import PluginConfig
from forecourt.plugins.redis_config import RedisConfig

PERIODS = ("second", "minute", "hour", "day", "month", "year")
_FLAT_REDIS_FIELDS = (
    "host",
    "port",
    "password",
    "username",
    "ssl",
    "ssl_verify",
    "server_name",
    "timeout",
    "database",
)


# ---------------------------------------------------------------------- config
class RateLimitingConfig(PluginConfig):
    """Kong 3.x `rate-limiting` config."""

    second: float | None = Field(None, gt=0, description="Requests allowed per second.")
    minute: float | None = Field(None, gt=0, description="Requests allowed per minute.")
    hour: float | None = Field(None, gt=0, description="Requests allowed per hour.")
    day: float | None = Field(None, gt=0, description="Requests allowed per day.")
    month: float | None = Field(None, gt=0, description="Requests allowed per calendar month.")
    year: float | None = Field(None, gt=0, description="Requests allowed per calendar year.")
    limit_by: Literal["consumer", "credential", "ip", "service", "header", "path"] = Field(
        "consumer", description="What a counter counts (falls back to the client IP when absent)."
    )
    header_name: str | None = Field(None, min_length=1, description="Request header for `limit_by: header`.")
    path: str | None = Field(None, description="Request path for `limit_by: path`.")
    policy: Literal["local", "cluster", "redis"] = Field(
        "local", description="Where counters live: `local` (this node) or `redis` (shared by nodes)."
    )
    fault_tolerant: bool = Field(
        True, description="Proxy requests when the counter store fails (true) or answer 500 (false)."
    )
    redis: RedisConfig = Field(default_factory=RedisConfig, description="Redis for policy `redis`.")
    hide_client_headers: bool = Field(False, description="Leave out the rate-limit response headers.")
    error_code: int = Field(429, ge=100, le=599, description="Status when a limit is exceeded.")
    error_message: str = Field("API rate limit exceeded", description="Message when a limit is exceeded.")
    sync_rate: float = Field(
        -1, description="Kong's sync period for policy `redis`; Forecourt always counts synchronously."
    )

    @model_validator(mode="before")
    @classmethod
    def _flat_redis_fields(cls, data: Any) -> Any:
        """Kong 3.x still accepts the deprecated `redis_host`, `redis_port`, ... for `redis.*`."""
        if not isinstance(data, dict) or not any(f"redis_{f}" in data for f in _FLAT_REDIS_FIELDS):
            return data
        data = dict(data)
        nested = data.get("redis")
        redis = dict(nested) if isinstance(nested, dict) else {}
        for name in _FLAT_REDIS_FIELDS:
            flat = f"redis_{name}"
            if flat not in data:
                continue
            value = data.pop(flat)
            if value is None:
                continue
            if name in redis and redis[name] is not None and redis[name] != value:
                raise ValueError(f"config.{flat} (deprecated) and config.redis.{name} disagree")
            redis[name] = value
        data["redis"] = redis
        return data

    @model_validator(mode="after")
    def _check(self) -> RateLimitingConfig:
        limits = [(period, getattr(self, period)) for period in PERIODS]
        if all(limit is None for _, limit in limits):
            raise ValueError(
                "at least one of these fields must be non-empty: "
                + ", ".join(f"'config.{period}'" for period in PERIODS)
            )
        for i, (lower, low) in enumerate(limits):
            if low is None:
                continue
            for upper, high in limits[i + 1 :]:
                if high is not None and high < low:
                    raise ValueError(
                        f"The limit for {upper}({high:.1f}) cannot be lower than "
                        f"the limit for {lower}({low:.1f})"
                    )
        if self.policy == "cluster":
            raise ValueError(
                "policy 'cluster' keeps counters in Kong's database, which DB-less gateways do not have "
                "(Kong refuses it DB-less too): use 'local' or 'redis'"
            )
        if self.policy != "redis" and self.sync_rate != -1:
            raise ValueError("sync_rate can only be used with the redis policy")
        if self.policy == "redis" and self.sync_rate != -1 and self.sync_rate < 0.02:
            raise ValueError("sync_rate must be greater than 0.02, or -1 to disable")
        if self.limit_by == "header" and self.header_name is None:
            raise ValueError("config.header_name is required when config.limit_by is 'header'")
        if self.limit_by == "path" and self.path is None:
            raise ValueError("config.path is required when config.limit_by is 'path'")
        if self.path is not None and not self.path.startswith("/"):
            raise ValueError("config.path should start with: /")
        return self
