"""Service discovery: where an upstream's targets come from at run time, and client-side lookups.

Server-side (the gateway finds the instances): an upstream's ``discovery`` record builds a provider
(``dns``, ``eureka``, ``etcd``, ``static``) whose pushed target sets :class:`DiscoveredTargets`
applies to the upstream's balancer without a reload. Client-side (a program finds the instances
itself): :class:`Client` with :class:`Instance` and :class:`EurekaProvider`. See docs/discovery.md.

The client-side names live in ``client.py``/``instance.py`` and are imported on first use, so this
package (and the gateway, which needs only the server side) imports without them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from forecourt.discovery.providers import (
    DiscoveryError,
    DiscoveryProvider,
    DiscoverySink,
    DnsProvider,
    EtcdProvider,
    EurekaRegistryProvider,
    StaticProvider,
    TargetSpec,
    make_provider,
    provider_kinds,
    register_provider,
)
from forecourt.discovery.targets import DiscoveredTargets, DiscoveryState, DiscoveryStatus

if TYPE_CHECKING:
    from forecourt.discovery.client import Client, EurekaProvider
    from forecourt.discovery.instance import Instance

__all__ = [
    "Client",
    "DiscoveredTargets",
    "DiscoveryError",
    "DiscoveryProvider",
    "DiscoverySink",
    "DiscoveryState",
    "DiscoveryStatus",
    "DnsProvider",
    "EtcdProvider",
    "EurekaProvider",
    "EurekaRegistryProvider",
    "Instance",
    "StaticProvider",
    "TargetSpec",
    "make_provider",
    "provider_kinds",
    "register_provider",
]

_LAZY = {"Client": "client", "EurekaProvider": "client", "Instance": "instance"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    except (ImportError, AttributeError) as exc:
        raise AttributeError(f"{__name__}.{name} is not available: {exc}") from exc
    globals()[name] = value
    return value
