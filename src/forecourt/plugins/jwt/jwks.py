"""JWKS key sets: fetched over HTTP(S), cached per URL, refreshed in the background.

The request path only reads `JwksSource.keys` (a dict lookup by `kid`). It waits for the network
only when it truly must: before the first successful fetch, or for a `kid` the set does not know
(a signing-key rotation), and then at most once per `min_refresh_interval` per URL, with one
fetch shared by every request that waits. When the endpoint is down the last good set keeps
being served (stale) until a fetch succeeds again.

The HTTP client is a few lines over an asyncio stream and httptools (already a dependency): one
GET, `Connection: close`, a size limit and a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httptools
import orjson

from forecourt.plugins.jwt.keys import JwkError, Verifier, jwk_public_key, public_key_verifier

log = logging.getLogger(__name__)

MAX_JWKS_BYTES = 1 << 20
FETCH_TIMEOUT = 5.0


class JwksFetchError(Exception):
    """A JWKS could not be fetched or parsed."""


@dataclass(frozen=True, slots=True)
class JwksKeys:
    """One fetched key set: verifiers by `kid` and algorithm; keys without a `kid` separately."""

    by_kid: Mapping[str, Mapping[str, Verifier]]
    unnamed: tuple[Mapping[str, Verifier], ...] = ()

    def candidates(self, kid: object, algorithm: str) -> list[Verifier] | None:
        """Verifiers for a token's `kid` and `alg`; None when the `kid` is unknown (refresh)."""
        if isinstance(kid, str):
            named = self.by_kid.get(kid)
            if named is None:
                return None
            found = named.get(algorithm)
            return [found] if found is not None else []
        out = [v for keys in self.unnamed if (v := keys.get(algorithm)) is not None]
        out.extend(v for keys in self.by_kid.values() if (v := keys.get(algorithm)) is not None)
        return out


def parse_jwks(body: bytes) -> JwksKeys:
    """A JWKS document → verifiers; unusable keys are skipped (and logged), not fatal."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise JwksFetchError("not JSON") from exc
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise JwksFetchError('no "keys" list')
    by_kid: dict[str, dict[str, Verifier]] = {}
    unnamed: list[dict[str, Verifier]] = []
    for jwk in keys:
        if not isinstance(jwk, dict):
            continue
        try:
            key, algorithms = jwk_public_key(jwk)
            verifiers = {alg: public_key_verifier(key, alg) for alg in algorithms}
        except (JwkError, ValueError) as exc:
            log.warning("JWKS key %r skipped: %s", jwk.get("kid"), exc)
            continue
        kid = jwk.get("kid")
        if isinstance(kid, str):
            by_kid.setdefault(kid, verifiers)
        else:
            unnamed.append(verifiers)
    return JwksKeys(by_kid, tuple(unnamed))


async def fetch(url: str, timeout: float = FETCH_TIMEOUT) -> bytes:
    """GET `url` (http or https) and return the body of a 200 answer."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    authority = parts.netloc.rpartition("@")[2]
    request = (
        f"GET {target} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\n"
        "User-Agent: forecourt-jwks\r\nConnection: close\r\n\r\n"
    ).encode()
    sink = _ResponseSink()
    parser = httptools.HttpResponseParser(sink)
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=ssl.create_default_context() if tls else None
            )
            writer.write(request)
            await writer.drain()
            while not sink.complete:
                data = await reader.read(65536)
                if not data:
                    parser.feed_data(b"")  # close-delimited body ends here
                    break
                parser.feed_data(data)
                if sink.size > MAX_JWKS_BYTES:
                    raise JwksFetchError("JWKS larger than 1 MiB")
    except (OSError, TimeoutError, httptools.HttpParserError) as exc:
        raise JwksFetchError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
    status = parser.get_status_code()
    if status != 200:
        raise JwksFetchError(f"HTTP {status}")
    return b"".join(sink.body)


class _ResponseSink:
    """httptools callbacks for one response."""

    def __init__(self) -> None:
        self.body: list[bytes] = []
        self.size = 0
        self.complete = False

    def on_body(self, data: bytes) -> None:
        self.body.append(data)
        self.size += len(data)

    def on_message_complete(self) -> None:
        self.complete = True


@dataclass(eq=False)
class JwksSource:
    """The key set of one JWKS URL in this process."""

    url: str
    refresh_interval: float
    min_refresh_interval: float
    keys: JwksKeys | None = None
    fetched_at: float = 0.0
    last_attempt: float = field(default=-1e18)
    last_error: str | None = None
    users: int = 0
    _inflight: asyncio.Future[None] | None = None
    _task: asyncio.Task[None] | None = None

    def may_refresh(self) -> bool:
        """Whether an on-demand refresh (unknown `kid`, no keys yet) is allowed now."""
        return time.monotonic() - self.last_attempt >= self.min_refresh_interval

    def pending_refresh(self) -> asyncio.Future[None] | None:
        """A fetch to wait for: the one in flight, a new one if the rate limit allows, or None."""
        inflight = self._inflight
        if inflight is not None and not inflight.done():
            return inflight
        return self.refresh() if self.may_refresh() else None

    def refresh(self) -> asyncio.Future[None]:
        """Fetch now, or join the fetch in flight; the future never raises."""
        inflight = self._inflight
        if inflight is not None and not inflight.done():
            return inflight
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._inflight = future
        self.last_attempt = time.monotonic()
        task = loop.create_task(self._fetch(future))
        _TASKS.add(task)
        task.add_done_callback(_discard)
        return future

    async def _fetch(self, future: asyncio.Future[None]) -> None:
        try:
            self.keys = parse_jwks(await fetch(self.url))
            self.fetched_at = time.monotonic()
            self.last_error = None
        except JwksFetchError as exc:
            self.last_error = str(exc)
            stale = "; serving the cached keys" if self.keys is not None else ""
            log.warning("JWKS %s: fetch failed (%s)%s", self.url, exc, stale)
        finally:
            if not future.done():
                future.set_result(None)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._refresh_forever())

    async def _refresh_forever(self) -> None:
        """Refresh every `refresh_interval`; while failing, retry every `min_refresh_interval`."""
        while True:
            await self.refresh()
            wait = self.refresh_interval if self.last_error is None else self.min_refresh_interval
            await asyncio.sleep(max(wait, 0.05))

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


_TASKS: set[asyncio.Task[Any]] = set()


def _discard(task: asyncio.Task[Any]) -> None:
    _TASKS.discard(task)
    if not task.cancelled() and task.exception() is not None:  # pragma: no cover - _fetch catches
        log.error("JWKS fetch task failed", exc_info=task.exception())


class JwksRegistry:
    """JWKS sources of this process, shared by every plugin instance (and across reloads) that
    names the same URL with the same intervals; a source lives while some started plugin uses it."""

    def __init__(self) -> None:
        self._sources: dict[tuple[str, float, float], JwksSource] = {}

    def source(self, url: str, refresh_interval: float, min_refresh_interval: float) -> JwksSource:
        key = (url, refresh_interval, min_refresh_interval)
        found = self._sources.get(key)
        if found is None:
            found = JwksSource(url, refresh_interval, min_refresh_interval)
            self._sources[key] = found
        return found

    def acquire(self, source: JwksSource) -> None:
        source.users += 1
        source.start()

    async def release(self, source: JwksSource) -> None:
        source.users -= 1
        if source.users <= 0:
            source.users = 0
            await source.stop()
            key = (source.url, source.refresh_interval, source.min_refresh_interval)
            if self._sources.get(key) is source:
                del self._sources[key]


REGISTRY = JwksRegistry()
