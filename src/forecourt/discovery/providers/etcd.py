"""The ``etcd`` provider: every key under a prefix in etcd v3 is one instance, followed with a watch.

It talks to etcd's JSON gateway for gRPC (``/v3/...``, served on the client URL by every etcd since
3.3), so it needs no gRPC stack: ``POST /v3/kv/range`` with the prefix (keys and values are base64)
reads the current set and its revision, then ``POST /v3/watch`` from the next revision streams
every change as newline-delimited JSON. Each change pushes the whole set again.

A value is an instance as JSON: ``{"host": "10.0.0.7", "port": 8080, "weight": 100}`` (``weight``
optional, 100 by default; ``address``, an IP to dial when ``host`` is a name that should only be
sent as ``Host``). A value that is not such an object is logged and skipped, not fatal: one bad
registration must not take down the others.

Failure handling: a request that fails, or a watch that ends (etcd restarted, network cut), is
retried on the next endpoint with exponential backoff, and every reconnection starts with a full
range read, so events missed while disconnected cannot leave a wrong set behind. A watch cancelled
because its revision was compacted also resyncs with a full read. While etcd is unreachable the
consumer keeps the last pushed set (the provider reports ``fail``).

Lease-bound keys (an instance's registration that expires when it stops heart-beating) simply show
up as deletions, so instances that die without deregistering drop out after their lease TTL.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import logging
from collections.abc import Sequence
from typing import Any

import orjson

from forecourt.discovery.http_client import HttpClientError, HttpStream, request
from forecourt.discovery.providers.backoff import Backoff
from forecourt.discovery.providers.base import DiscoveryError, DiscoverySink, TargetSpec

__all__ = ["EtcdProvider", "parse_instance", "prefix_range_end"]

log = logging.getLogger("forecourt.discovery")


def prefix_range_end(prefix: bytes) -> bytes:
    """etcd's ``range_end`` for "every key starting with ``prefix``": the prefix plus one, as a key."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"  # every key


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def parse_instance(value: bytes) -> TargetSpec:
    """An instance JSON value as a target; ``ValueError`` says what is wrong with it."""
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise ValueError(f"not JSON: {value[:60]!r}") from None
    if not isinstance(data, dict):
        raise ValueError('expected an object like {"host": "10.0.0.7", "port": 8080}')
    host, port, weight, address = (
        data.get("host"),
        data.get("port"),
        data.get("weight", 100),
        data.get("address"),
    )
    if not isinstance(host, str) or not host:
        raise ValueError('"host" must be a non-empty string')
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError('"port" must be an integer between 1 and 65535')
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 65535:
        raise ValueError('"weight" must be an integer between 0 and 65535')
    if address is not None:
        try:
            address = str(ipaddress.ip_address(str(address).strip("[]")))
        except ValueError:
            raise ValueError('"address" must be an IP address') from None
    return TargetSpec(host.strip("[]"), port, weight, address)


class _Resync(Exception):
    """The watch must start over from a full read (its revision was compacted)."""


class EtcdProvider:
    """Pushes the instances under ``prefix``: a full read, then a watch from the revision after it."""

    kind = "etcd"

    def __init__(
        self,
        endpoints: Sequence[str],
        prefix: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 5.0,
        backoff: Backoff | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("etcd discovery needs at least one endpoint")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.prefix = prefix.encode()
        self.username = username
        self.password = password
        self.timeout = timeout
        self.backoff = backoff or Backoff(initial=0.2, maximum=10.0)
        self.revision = 0
        self._instances: dict[bytes, TargetSpec] = {}
        self._current = 0

    @property
    def endpoint(self) -> str:
        return self.endpoints[self._current]

    async def watch(self, sink: DiscoverySink) -> None:
        while True:
            try:
                headers = await self._authenticate()
                await self._read_all(headers)
                sink.push(self.targets())
                self.backoff.reset()
                await self._follow(headers, sink)
                log.info("discovery: etcd watch of %s on %s ended; resyncing", self.prefix, self.endpoint)
                await asyncio.sleep(self.backoff.next())  # a server that keeps ending watches: no spin
            except _Resync:
                log.info(
                    "discovery: etcd revision %d was compacted; resyncing %s", self.revision, self.prefix
                )
            except (HttpClientError, DiscoveryError) as exc:
                sink.fail(DiscoveryError(f"etcd {self.endpoint}: {exc}"))
                self._current = (self._current + 1) % len(self.endpoints)
                await asyncio.sleep(self.backoff.next())

    def targets(self) -> list[TargetSpec]:
        """The current set, ordered by key."""
        return [self._instances[key] for key in sorted(self._instances)]

    async def _authenticate(self) -> dict[str, str]:
        if self.username is None:
            return {}
        body = {"name": self.username, "password": self.password or ""}
        data = await self._call("/v3/auth/authenticate", body, {})
        token = data.get("token")
        if not isinstance(token, str):
            raise DiscoveryError("authentication answered without a token")
        return {"Authorization": token}

    async def _call(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        response = await request(
            "POST", self.endpoint + path, json=body, headers=headers, timeout=self.timeout
        )
        data = response.json()
        if response.status != 200 or not isinstance(data, dict):
            message = data.get("message") or data.get("error") if isinstance(data, dict) else None
            raise DiscoveryError(f"{path} answered {response.status}: {message or response.body[:120]!r}")
        return data

    async def _read_all(self, headers: dict[str, str]) -> None:
        body = {"key": _b64(self.prefix), "range_end": _b64(prefix_range_end(self.prefix))}
        data = await self._call("/v3/kv/range", body, headers)
        self.revision = int(data.get("header", {}).get("revision", 0))
        self._instances = {}
        for kv in data.get("kvs", ()):
            self._apply_put(kv)

    async def _follow(self, headers: dict[str, str], sink: DiscoverySink) -> None:
        """Stream changes after ``self.revision`` until the watch ends (returns) or fails (raises)."""
        create = {
            "key": _b64(self.prefix),
            "range_end": _b64(prefix_range_end(self.prefix)),
            "start_revision": str(self.revision + 1),
        }
        async with HttpStream(
            "POST", self.endpoint + "/v3/watch", json={"create_request": create}, headers=headers,
            timeout=self.timeout,
        ) as stream:  # fmt: skip
            if stream.status != 200:
                raise DiscoveryError(f"/v3/watch answered {stream.status}: {(await stream.read())[:120]!r}")
            async for line in stream.lines():
                try:
                    message = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise DiscoveryError(f"bad watch message: {line[:80]!r}") from exc
                if "error" in message:
                    raise DiscoveryError(f"watch failed: {message['error'].get('message', message['error'])}")
                if self._on_watch_result(message.get("result") or {}):
                    sink.push(self.targets())

    def _on_watch_result(self, result: dict[str, Any]) -> bool:
        """Apply one watch response; True when it carried events."""
        if result.get("canceled"):
            if int(result.get("compact_revision", 0) or 0):
                raise _Resync()
            raise DiscoveryError(f"watch cancelled: {result.get('cancel_reason') or 'no reason given'}")
        events = result.get("events") or ()
        for event in events:
            kv = event.get("kv") or {}
            if event.get("type") == "DELETE":
                self._instances.pop(base64.b64decode(kv.get("key", "")), None)
            else:
                self._apply_put(kv)
            self.revision = max(self.revision, int(kv.get("mod_revision", 0) or 0))
        return bool(events)

    def _apply_put(self, kv: dict[str, Any]) -> None:
        key = base64.b64decode(kv.get("key", ""))
        try:
            self._instances[key] = parse_instance(base64.b64decode(kv.get("value", "")))
        except ValueError as exc:
            self._instances.pop(key, None)
            log.warning(
                "discovery: etcd key %s is not an instance, skipped: %s", key.decode(errors="replace"), exc
            )

    def __repr__(self) -> str:
        return f"<EtcdProvider {self.prefix.decode(errors='replace')} on {', '.join(self.endpoints)}>"
