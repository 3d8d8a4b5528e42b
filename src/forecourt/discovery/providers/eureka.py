"""The ``eureka`` provider: one application's instances in a Eureka-compatible registry.

It reads the registry the way Eureka's own clients do, in JSON: a full fetch of the application
(``GET {url}/apps/{APP}``) first, then every ``interval`` seconds the registry's recent changes
(``GET {url}/apps/delta``), applied by ``instanceId`` (ADDED/MODIFIED replace, DELETED removes).
Deltas are idempotent (the registry keeps about three minutes of them), so reading one twice is
harmless. A full fetch replaces the delta read when the registry has no delta endpoint (404/403,
as with ``disable-delta``), when polls are further apart than the delta retention, every
``FULL_FETCH_EVERY`` polls (Eureka's clients compare a hash of the whole registry for this; one
application cannot, so it re-reads periodically instead), and after any failure.

An instance is a target when its status is ``status`` (UP by default) and the port in use is
enabled: ``port`` normally, ``securePort`` with ``secure: true``. It is dialled at ``ipAddr`` and
sent ``hostName`` as ``Host``; its metadata may carry a ``weight`` (0-65535, default 100).

Parsing is lenient like Eureka's codecs: ``instance`` may be a list or one object, ports come as
``{"$": 8080, "@enabled": "true"}``, a string or a bare number, booleans may be strings.
A 404 for the application is an empty set (the registry answered: nothing is registered).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from typing import Any

from forecourt.discovery.http_client import HttpClientError, request
from forecourt.discovery.providers.backoff import Backoff
from forecourt.discovery.providers.base import DiscoveryError, DiscoverySink, TargetSpec

__all__ = ["DELTA_RETENTION", "FULL_FETCH_EVERY", "EurekaRegistryProvider", "instance_target"]

log = logging.getLogger("forecourt.discovery")

FULL_FETCH_EVERY = 10
"""Polls between two full fetches when deltas are used."""
DELTA_RETENTION = 180.0
"""Seconds of changes a Eureka server keeps for ``/apps/delta`` (its default retention)."""


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _enabled(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _port(value: Any) -> tuple[int | None, bool]:
    """(number, enabled) of a Eureka port in any of its spellings."""
    enabled = True
    if isinstance(value, dict):
        enabled = _enabled(value.get("@enabled", "true"))
        value = value.get("$")
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None, False
    return number, enabled and 0 < number < 65536


def instance_target(instance: dict[str, Any], *, secure: bool, status: str) -> TargetSpec | None:
    """The target an instance record stands for, or None when it must get no traffic."""
    if str(instance.get("status", "")).upper() != status.upper():
        return None
    port, enabled = _port(instance.get("securePort" if secure else "port"))
    if port is None or not enabled:
        return None
    ip = str(instance.get("ipAddr") or "").strip("[]")
    try:
        address = str(ipaddress.ip_address(ip))
    except ValueError:
        return None
    host = str(instance.get("hostName") or address)
    weight = 100
    metadata = instance.get("metadata")
    if isinstance(metadata, dict) and "weight" in metadata:
        with contextlib.suppress(TypeError, ValueError):
            weight = min(65535, max(0, int(metadata["weight"])))
    return TargetSpec(host, port, weight, address)


def _instance_id(instance: dict[str, Any]) -> str:
    found = instance.get("instanceId")
    if found:
        return str(found)
    port, _ = _port(instance.get("port"))
    return f"{instance.get('hostName') or instance.get('ipAddr')}:{port}"


class EurekaRegistryProvider:
    """Pushes the targets of ``app`` from the Eureka registry at ``url`` (e.g. ``.../eureka``)."""

    kind = "eureka"

    def __init__(
        self,
        url: str,
        app: str,
        *,
        interval: float = 30.0,
        delta: bool = True,
        secure: bool = False,
        status: str = "UP",
        timeout: float = 5.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.app = app
        self.interval = interval
        self.delta = delta and interval < DELTA_RETENTION
        self.secure = secure
        self.status = status
        self.timeout = timeout
        self._instances: dict[str, dict[str, Any]] = {}
        self._polls_since_full: int | None = None  # None: the next poll is a full fetch

    async def watch(self, sink: DiscoverySink) -> None:
        backoff = Backoff(initial=min(self.interval, 1.0), maximum=max(self.interval, 30.0))
        while True:
            try:
                await self.poll()
            except DiscoveryError as exc:
                sink.fail(exc)
                self._polls_since_full = None
                await asyncio.sleep(backoff.next())
                continue
            backoff.reset()
            sink.push(self.targets())
            await asyncio.sleep(self.interval)

    def targets(self) -> list[TargetSpec]:
        found = (
            instance_target(self._instances[key], secure=self.secure, status=self.status)
            for key in sorted(self._instances)
        )
        return [target for target in found if target is not None]

    async def poll(self) -> None:
        """One full or delta read, applied to the known instances."""
        full = not self.delta or self._polls_since_full is None or self._polls_since_full >= FULL_FETCH_EVERY
        if not full:
            applications = await self._get("/apps/delta", allow_missing=True)
            if applications is None:  # no delta support here: full fetches from now on
                log.info("discovery: %s has no /apps/delta; using full fetches", self.url)
                self.delta = False
                full = True
            else:
                self._apply_delta(applications.get("applications") or {})
                self._polls_since_full = (self._polls_since_full or 0) + 1
        if full:
            body = await self._get(f"/apps/{self.app}", allow_missing=True)
            if body is None and self._instances:
                log.warning("discovery: %s knows no application %s (404): no targets", self.url, self.app)
            application = (body or {}).get("application") or {}
            self._instances = {
                _instance_id(i): i for i in _as_list(application.get("instance")) if isinstance(i, dict)
            }
            self._polls_since_full = 0

    def _apply_delta(self, applications: dict[str, Any]) -> None:
        for application in _as_list(applications.get("application")):
            if (
                not isinstance(application, dict)
                or str(application.get("name", "")).upper() != self.app.upper()
            ):
                continue
            for instance in _as_list(application.get("instance")):
                if not isinstance(instance, dict):
                    continue
                key = _instance_id(instance)
                if str(instance.get("actionType", "")).upper() == "DELETED":
                    self._instances.pop(key, None)
                else:
                    self._instances[key] = instance

    async def _get(self, path: str, *, allow_missing: bool) -> dict[str, Any] | None:
        url = self.url + path
        try:
            response = await request("GET", url, timeout=self.timeout)
        except HttpClientError as exc:
            raise DiscoveryError(f"eureka {url}: {exc}") from exc
        if allow_missing and response.status in (403, 404):
            return None
        if response.status != 200:
            raise DiscoveryError(f"eureka {url} answered {response.status}: {response.body[:120]!r}")
        try:
            data = response.json()
        except HttpClientError as exc:
            raise DiscoveryError(f"eureka {url}: {exc}") from exc
        if not isinstance(data, dict):
            raise DiscoveryError(f"eureka {url}: expected a JSON object")
        return data

    def __repr__(self) -> str:
        return f"<EurekaRegistryProvider {self.app} at {self.url}>"
