"""Discovery providers and their named registry: ``make_provider(discovery_config)``.

Each provider watches one kind of source and pushes whole target sets (see ``base.py``); a new kind
registers a factory with :func:`register_provider` under its config ``type``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from forecourt.discovery.providers.backoff import Backoff
from forecourt.discovery.providers.base import (
    DiscoveryError,
    DiscoveryProvider,
    DiscoverySink,
    TargetSpec,
    format_error,
)
from forecourt.discovery.providers.dns import DnsProvider
from forecourt.discovery.providers.etcd import EtcdProvider
from forecourt.discovery.providers.eureka import EurekaRegistryProvider
from forecourt.discovery.providers.static import StaticProvider

__all__ = [
    "Backoff",
    "DiscoveryError",
    "DiscoveryProvider",
    "DiscoverySink",
    "DnsProvider",
    "EtcdProvider",
    "EurekaRegistryProvider",
    "ProviderFactory",
    "StaticProvider",
    "TargetSpec",
    "format_error",
    "make_provider",
    "provider_kinds",
    "register_provider",
]

ProviderFactory = Callable[..., DiscoveryProvider]
"""``factory(config, nameservers=..., extra_targets=...)`` → provider; ``config`` is the upstream's
``discovery`` record (``forecourt.config.discovery``)."""


def _dns(config: Any, *, nameservers: Sequence[str] | None = None, **_: Any) -> DiscoveryProvider:
    return DnsProvider(
        config.name,
        config.port,
        record=config.record,
        interval=config.interval,
        weight=config.weight,
        nameservers=nameservers,
    )


def _eureka(config: Any, **_: Any) -> DiscoveryProvider:
    return EurekaRegistryProvider(
        config.url,
        config.app,
        interval=config.interval,
        delta=config.delta,
        secure=config.secure,
        status=config.status,
        timeout=config.timeout,
    )


def _etcd(config: Any, **_: Any) -> DiscoveryProvider:
    return EtcdProvider(
        config.endpoints,
        config.prefix,
        username=config.username,
        password=config.password,
        timeout=config.timeout,
    )


def _static(config: Any, *, extra_targets: Sequence[TargetSpec] = (), **_: Any) -> DiscoveryProvider:
    listed = [TargetSpec(t.host, t.port, t.weight) for t in config.targets]
    return StaticProvider([*listed, *extra_targets])


_FACTORIES: dict[str, ProviderFactory] = {"dns": _dns, "eureka": _eureka, "etcd": _etcd, "static": _static}


def register_provider(kind: str, factory: ProviderFactory) -> None:
    """Make ``discovery: {type: kind, ...}`` build its provider with ``factory``."""
    _FACTORIES[kind] = factory


def provider_kinds() -> list[str]:
    return sorted(_FACTORIES)


def make_provider(
    config: Any, *, nameservers: Sequence[str] | None = None, extra_targets: Sequence[TargetSpec] = ()
) -> DiscoveryProvider:
    """The provider for an upstream's ``discovery`` record (``config.type`` picks the factory).

    ``nameservers``: the gateway's ``--dns-resolver``; ``extra_targets``: the upstream's own
    ``targets``, which only a ``static`` record may be combined with.
    """
    factory = _FACTORIES.get(config.type)
    if factory is None:
        raise ValueError(f"unknown discovery type {config.type!r}; known: {', '.join(provider_kinds())}")
    return factory(config, nameservers=nameservers, extra_targets=extra_targets)
