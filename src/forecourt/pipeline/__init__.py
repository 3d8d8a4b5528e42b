"""The plugin pipeline: plugin interface, per-request context, chains and the plugin registry."""

from forecourt.pipeline.chain import PluginChain, PluginSet
from forecourt.pipeline.consumers import Consumer, ConsumerIndex, Credential
from forecourt.pipeline.context import Context, ResponseHead
from forecourt.pipeline.plugin import Plugin, PluginConfig, PluginEnv, PluginScope
from forecourt.pipeline.registry import BUNDLED, PluginLoadError, PluginRegistry, load_class
from forecourt.pipeline.response import Response

__all__ = [
    "BUNDLED",
    "Consumer",
    "ConsumerIndex",
    "Context",
    "Credential",
    "Plugin",
    "PluginChain",
    "PluginConfig",
    "PluginEnv",
    "PluginLoadError",
    "PluginRegistry",
    "PluginScope",
    "PluginSet",
    "Response",
    "ResponseHead",
    "load_class",
]
