"""Kong 3.x's shared `config.redis` record, one schema for every plugin that can use Redis
(`rate-limiting` policy `redis`, `proxy-cache` strategy `redis`).

Turned into connection settings by `forecourt.state.RedisSettings.from_plugin`, which also applies
the gateway's `--redis` URL when `host` is unset.
"""

from __future__ import annotations

from pydantic import Field

from forecourt.pipeline.plugin import PluginConfig


class RedisConfig(PluginConfig):
    """Kong's shared `config.redis` record (the fields Forecourt supports)."""

    host: str | None = Field(
        None, description="Redis host; required when the plugin uses Redis (unless `--redis` gives a URL)."
    )
    port: int = Field(6379, ge=0, le=65535, description="Redis port.")
    timeout: int = Field(2000, ge=0, le=2**31 - 2, description="Connect and reply timeout in milliseconds.")
    username: str | None = Field(None, description="ACL user (Redis 6+); no AUTH user when unset.")
    password: str | None = Field(None, description="Password; no AUTH when unset.")
    database: int = Field(0, ge=0, description="Redis database number.")
    ssl: bool = Field(False, description="Connect with TLS.")
    ssl_verify: bool = Field(False, description="Verify the server certificate (with `ssl`).")
    server_name: str | None = Field(None, description="TLS server name; Forecourt only accepts the host.")
