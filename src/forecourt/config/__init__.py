"""Configuration: Kong 3.x declarative files (plus Forecourt's extensions) → a validated snapshot.

`load_config` / `parse_config` return a `GatewayConfig` or raise one `ConfigError` whose `issues`
point at `file:line: key.path`. Later compile stages report their own problems through
`GatewayConfig.issue(path, message)` so they point at the same place.
"""

from forecourt.config.errors import ConfigError, ConfigIssue, KeyPath, format_path
from forecourt.config.healthchecks import (
    ActiveHealthcheck,
    ActiveHealthy,
    ActiveUnhealthy,
    Healthchecks,
    PassiveHealthcheck,
    PassiveHealthy,
    PassiveUnhealthy,
)
from forecourt.config.listen import Listen, parse_listen
from forecourt.config.loader import load_config, parse_config
from forecourt.config.model import (
    CACertificate,
    Certificate,
    Consumer,
    GatewayConfig,
    PluginConfig,
    Route,
    Service,
    Target,
    Upstream,
)
from forecourt.config.plugins import PluginSchemas
from forecourt.config.source import ConfigSource

__all__ = [
    "ActiveHealthcheck",
    "ActiveHealthy",
    "ActiveUnhealthy",
    "CACertificate",
    "Certificate",
    "ConfigError",
    "ConfigIssue",
    "ConfigSource",
    "Consumer",
    "GatewayConfig",
    "Healthchecks",
    "KeyPath",
    "Listen",
    "PassiveHealthcheck",
    "PassiveHealthy",
    "PassiveUnhealthy",
    "PluginConfig",
    "PluginSchemas",
    "Route",
    "Service",
    "Target",
    "Upstream",
    "format_path",
    "load_config",
    "parse_config",
    "parse_listen",
]
