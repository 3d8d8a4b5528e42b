"""Client-side discovery: resolve a service name to healthy instances and call one of them.

    from forecourt.discovery.client import Client

    with Client("http://127.0.0.1:8761/eureka/", "ORDER-SERVICE") as orders:
        orders.instances()                      # [Instance(host='10.0.0.7', port=8080, ...), ...]
        orders.choose()                         # the next one, round-robin
        orders.call("GET", "/orders/42").json() # fails over to the next instance

    async with Client(provider, "ORDER-SERVICE", refresh_interval=10) as orders:
        await orders.acall("GET", "/orders/42")

The instance list is cached and refreshed in the background every `refresh_interval` seconds (on a
private thread for the sync API, as a task on the caller's loop for the async one; the first call
fetches before answering). When a refresh fails the last known list stays in use and the failure is
logged: a registry outage must not take every service down with it.

`call()` fails over to the next instance (each instance tried at most once per call):
* when the connection cannot be established — nothing was sent, so this holds for every method;
* when the exchange breaks after sending, or the answer is a 5xx — only for idempotent methods
  (GET, HEAD, OPTIONS, PUT, DELETE, TRACE), where sending the request twice is harmless.
An instance that failed to connect or answer is avoided by `choose()` for `eject_for` seconds
(default: one refresh interval), so callers stop paying for a dead instance before the registry
evicts it. When every instance answered 5xx, the last answer is returned as it is.

Dependency-light on purpose: the sync API uses `http.client`, the async one asyncio streams and
httptools (already a runtime dependency); one connection per call, no pooling.

Errors, all subclasses of the package's one base `forecourt.discovery.DiscoveryError`:
`ProviderError` (the source cannot be reached or read, and nothing is cached), `NoInstancesError`
(no healthy instance), `CallError` (every attempt failed; carries the attempts).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import itertools
import logging
import os
import random
import ssl
import sys
import threading
import time
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self, TypeVar
from urllib.parse import quote, urlsplit

import httptools
import orjson

from forecourt import __version__
from forecourt.discovery.instance import Instance, Provider
from forecourt.discovery.providers.base import DiscoveryError
from forecourt.registry.codec import CodecError, body_format, decode_application
from forecourt.registry.model import InstanceInfo

__all__ = [
    "DEFAULT_REGISTRY_URL",
    "IDEMPOTENT_METHODS",
    "CallError",
    "Client",
    "DiscoveryError",
    "EurekaProvider",
    "NoInstancesError",
    "ProviderError",
    "Response",
    "resolve_command",
]

log = logging.getLogger("forecourt.discovery")

DEFAULT_REGISTRY_URL = "http://127.0.0.1:8761/eureka/"
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_USER_AGENT = f"forecourt-discovery/{__version__}"
_T = TypeVar("_T")


class ProviderError(DiscoveryError):
    """The discovery source could not be reached or read."""


class NoInstancesError(DiscoveryError):
    """No healthy instance of the service is known."""


class CallError(DiscoveryError):
    """`call()` failed on every instance it tried; `attempts` lists (instance, reason)."""

    def __init__(self, message: str, attempts: list[tuple[Instance, str]]) -> None:
        super().__init__(message)
        self.attempts = attempts


# ------------------------------------------------------------------------------------------ wire
@dataclass(frozen=True, slots=True)
class Response:
    """An instance's answer to `call()`."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    instance: Instance | None = None

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return orjson.loads(self.body)


class _ConnectFailed(Exception):
    """Nothing was sent: retrying elsewhere is always safe."""


class _ExchangeFailed(Exception):
    """The request may have been received: retrying is safe only for idempotent methods."""


@dataclass(slots=True)
class _Target:
    secure: bool
    host: str
    port: int
    path: str = "/"
    authorization: str | None = None

    @classmethod
    def parse(cls, url: str) -> _Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ProviderError(f"invalid registry URL {url!r}: expected http(s)://host[:port]/path")
        secure = parts.scheme == "https"
        auth = None
        if parts.username is not None:
            raw = f"{parts.username}:{parts.password or ''}".encode()
            auth = "Basic " + base64.b64encode(raw).decode("ascii")
        try:
            port = parts.port or (443 if secure else 80)
        except ValueError as exc:
            raise ProviderError(f"invalid registry URL {url!r}: {exc}") from None
        return cls(secure, parts.hostname, port, parts.path or "/", auth)

    @property
    def host_header(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _request_head(
    method: str, target: str, host: str, headers: Mapping[str, str], body: bytes | None
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    names = {name.lower() for name in headers}
    if "user-agent" not in names:
        lines.append(f"User-Agent: {_USER_AGENT}")
    lines.extend(f"{name}: {value}" for name, value in headers.items() if name.lower() != "host")
    if body is not None or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body or b'')}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class _Collector:
    """httptools callbacks for one response."""

    def __init__(self) -> None:
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.headers_done = False
        self.done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True


async def _exchange_async(
    target: _Target,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes | None,
    timeout: float,
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[int, list[tuple[str, str]], bytes]:
    context = (ssl_context or ssl.create_default_context()) if target.secure else None
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(target.host, target.port, ssl=context), timeout
        )
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        raise _ConnectFailed(f"cannot connect to {target.host_header}: {exc or type(exc).__name__}") from exc
    collector = _Collector()
    parser = httptools.HttpResponseParser(collector)
    try:
        async with asyncio.timeout(timeout):
            writer.write(_request_head(method, path, target.host_header, headers, body) + (body or b""))
            while not collector.done and not (method == "HEAD" and collector.headers_done):
                data = await reader.read(65536)
                if not data:
                    if _ends_at_close(collector):
                        break
                    raise _ExchangeFailed(f"{target.host_header} closed the connection before answering")
                parser.feed_data(data)
    except TimeoutError as exc:
        raise _ExchangeFailed(f"{target.host_header} did not answer within {timeout:g}s") from exc
    except (OSError, httptools.HttpParserError) as exc:
        raise _ExchangeFailed(f"exchange with {target.host_header} failed: {exc}") from exc
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 1.0)
    return parser.get_status_code(), collector.headers, b"".join(collector.body)


def _ends_at_close(collector: _Collector) -> bool:
    """A response without length or chunking ends when the connection does."""
    if not collector.headers_done:
        return False
    names = {name.lower() for name, _ in collector.headers}
    return "content-length" not in names and "transfer-encoding" not in names


def _exchange_sync(
    target: _Target,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes | None,
    timeout: float,
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[int, list[tuple[str, str]], bytes]:
    conn: http.client.HTTPConnection
    if target.secure:
        context = ssl_context or ssl.create_default_context()
        conn = http.client.HTTPSConnection(target.host, target.port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    try:
        try:
            conn.connect()
        except OSError as exc:
            raise _ConnectFailed(f"cannot connect to {target.host_header}: {exc}") from exc
        try:
            send = {"User-Agent": _USER_AGENT, **headers, "Connection": "close"}
            conn.request(method, path, body=body, headers=send)
            answer = conn.getresponse()
            return answer.status, answer.getheaders(), answer.read()
        except TimeoutError as exc:
            raise _ExchangeFailed(f"{target.host_header} did not answer within {timeout:g}s") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise _ExchangeFailed(f"exchange with {target.host_header} failed: {exc!r}") from exc
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------ Eureka
class EurekaProvider:
    """Instances from a Eureka server (`forecourt registry`, or Netflix/Spring Cloud Eureka).

    `url` is the Eureka base URL (`http://host:8761/eureka/`, credentials allowed in it), or several
    tried in order. An instance's host is its `ipAddr` (`hostName` when `prefer_ip` is false or
    there is no address); it is secure when only its secure port is enabled."""

    def __init__(
        self,
        url: str | Sequence[str] = DEFAULT_REGISTRY_URL,
        *,
        timeout: float = 5.0,
        prefer_ip: bool = True,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        urls = [url] if isinstance(url, str) else list(url)
        if not urls:
            raise ValueError("EurekaProvider needs at least one registry URL")
        self.urls = urls
        self.targets = [_Target.parse(u) for u in urls]
        self.timeout = timeout
        self.prefer_ip = prefer_ip
        self.ssl_context = ssl_context

    async def fetch(self, app: str) -> list[Instance]:
        errors = []
        for url, target in zip(self.urls, self.targets, strict=True):
            base = target.path if target.path.endswith("/") else target.path + "/"
            headers = {"Accept": "application/json"}
            if target.authorization:
                headers["Authorization"] = target.authorization
            path = f"{base}apps/{quote(app.upper(), safe='')}"
            try:
                status, answer_headers, body = await _exchange_async(
                    target, "GET", path, headers, None, self.timeout, self.ssl_context
                )
            except (_ConnectFailed, _ExchangeFailed) as exc:
                errors.append(f"{url}: {exc}")
                continue
            if status == 404:
                return []
            if status != 200:
                errors.append(f"{url}: answered {status}")
                continue
            content_type = next((v for k, v in answer_headers if k.lower() == "content-type"), None)
            try:
                infos = decode_application(body, body_format(content_type, body))
            except CodecError as exc:
                raise ProviderError(f"{url}: unreadable answer for {app.upper()}: {exc}") from None
            return [self._instance(info) for info in infos if self._port(info) > 0]
        raise ProviderError(f"cannot fetch instances of {app.upper()}: {'; '.join(errors)}")

    @staticmethod
    def _secure(info: InstanceInfo) -> bool:
        return info.secure_port_enabled and not info.port_enabled

    def _port(self, info: InstanceInfo) -> int:
        return info.secure_port if self._secure(info) else info.port

    def _instance(self, info: InstanceInfo) -> Instance:
        host = (info.ip_addr or info.host_name) if self.prefer_ip else (info.host_name or info.ip_addr)
        return Instance(
            host=host,
            port=self._port(info),
            secure=self._secure(info),
            status=info.status.value,
            metadata=dict(info.metadata),
            instance_id=info.instance_id,
        )


# ------------------------------------------------------------------------------------------ Client
@dataclass(slots=True)
class _Cache:
    instances: tuple[Instance, ...] = ()
    fetched_at: float = 0.0
    loaded: bool = False
    ejected: dict[str, float] = field(default_factory=dict)


class Client:
    """Healthy instances of one service, cached; choice and calls with failover (module docstring)."""

    def __init__(
        self,
        source: str | Sequence[str] | Provider,
        app: str,
        *,
        refresh_interval: float = 30.0,
        strategy: Literal["round-robin", "random"] = "round-robin",
        timeout: float = 5.0,
        eject_for: float | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if strategy not in ("round-robin", "random"):
            raise ValueError(f"unknown strategy {strategy!r}: expected 'round-robin' or 'random'")
        if refresh_interval <= 0:
            raise ValueError("refresh_interval must be positive")
        self.provider: Provider
        if isinstance(source, str):
            self.provider = EurekaProvider(source, timeout=timeout)
        elif isinstance(source, Sequence):
            self.provider = EurekaProvider(list(source), timeout=timeout)
        else:
            self.provider = source
        self.app = app
        self.refresh_interval = refresh_interval
        self.strategy = strategy
        self.timeout = timeout
        self.eject_for = refresh_interval if eject_for is None else eject_for
        self.ssl_context = ssl_context
        self._cache = _Cache()
        self._counter = itertools.count()
        self._lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # where the refresher runs
        self._thread: threading.Thread | None = None
        self._first_fetch: asyncio.Lock | None = None

    # ------------------------------------------------------------------ refreshing
    async def refresh(self) -> list[Instance]:
        """Fetch now; on failure keep the last list (raise `ProviderError` when there is none)."""
        try:
            found = await self.provider.fetch(self.app)
        except Exception as exc:
            if not self._cache.loaded:
                if isinstance(exc, DiscoveryError):
                    raise
                raise ProviderError(f"cannot fetch instances of {self.app}: {exc}") from exc
            log.warning("discovery of %s failed, keeping %d known instances: %s", self.app,
                        len(self._cache.instances), exc)  # fmt: skip
            return list(self._cache.instances)
        with self._lock:
            self._cache.instances = tuple(found)
            self._cache.fetched_at = time.monotonic()
            self._cache.loaded = True
        return found

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval)
            try:
                await self.refresh()
            except Exception as exc:
                log.warning("discovery of %s failed: %s", self.app, exc)

    async def start(self) -> None:
        """Fetch once and refresh in the background on the running loop (idempotent)."""
        if self._first_fetch is None:
            self._first_fetch = asyncio.Lock()
        async with self._first_fetch:
            if not self._cache.loaded:
                await self.refresh()
            if self._task is None:
                self._task = asyncio.get_running_loop().create_task(self._refresh_forever())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._first_fetch = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _run_sync(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run `coro` on the client's private loop thread (started on first use)."""
        with self._lock:
            if self._thread is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=f"discovery-{self.app}", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(self.timeout * 4 + 5)

    def _ensure_sync(self) -> None:
        if self._task is None or not self._cache.loaded:
            self._run_sync(self.start())

    def close(self) -> None:
        """Stop the background refresher (sync API)."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        asyncio.run_coroutine_threadsafe(self.aclose(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
        self._thread = self._loop = None

    def __enter__(self) -> Self:
        self._ensure_sync()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ choosing
    def _healthy(self) -> list[Instance]:
        return [instance for instance in self._cache.instances if instance.healthy]

    def _pick(self, candidates: Sequence[Instance], exclude: set[str]) -> Instance:
        now = time.monotonic()
        pool = [i for i in candidates if i.address not in exclude]
        fresh = [i for i in pool if self._cache.ejected.get(i.address, 0.0) <= now]
        pool = fresh or pool
        if not pool:
            raise NoInstancesError(f"no healthy instance of {self.app}")
        if self.strategy == "random":
            return random.choice(pool)
        return pool[next(self._counter) % len(pool)]

    def _eject(self, instance: Instance) -> None:
        self._cache.ejected[instance.address] = time.monotonic() + self.eject_for

    def _restore(self, instance: Instance) -> None:
        self._cache.ejected.pop(instance.address, None)

    def instances(self) -> list[Instance]:
        """Healthy (UP) instances, from the cache."""
        self._ensure_sync()
        return self._healthy()

    async def ainstances(self) -> list[Instance]:
        await self.start()
        return self._healthy()

    def choose(self) -> Instance:
        """The next healthy instance (round-robin or random), avoiding recently failed ones."""
        return self._pick(self.instances(), set())

    async def achoose(self) -> Instance:
        return self._pick(await self.ainstances(), set())

    # ------------------------------------------------------------------ calling
    def _prepare(
        self, method: str, path: str, headers: Mapping[str, str] | None, body: bytes | None, json: Any
    ) -> tuple[str, str, dict[str, str], bytes | None]:
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/': {path!r}")
        send = dict(headers or {})
        if json is not None:
            body = orjson.dumps(json)
            send.setdefault("Content-Type", "application/json")
        return method.upper(), path, send, body

    def call(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        json: Any = None,
        timeout: float | None = None,
    ) -> Response:
        """Send one request to an instance, failing over as the module docstring describes."""
        method, path, send, body = self._prepare(method, path, headers, body, json)
        candidates = self.instances()
        attempts: list[tuple[Instance, str]] = []
        last: Response | None = None
        for _ in range(len(candidates)):
            instance = self._pick(candidates, {i.address for i, _ in attempts})
            target = _Target(instance.secure, instance.host, instance.port)
            try:
                status, answer_headers, answer = _exchange_sync(
                    target, method, path, send, body, timeout or self.timeout, self.ssl_context
                )
            except (_ConnectFailed, _ExchangeFailed) as exc:
                if not self._after_failure(method, instance, exc, attempts):
                    raise CallError(f"{method} {path} to {self.app} failed: {exc}", attempts) from exc
                continue
            last = Response(status, answer_headers, answer, instance)
            if not self._retry_answer(method, last, attempts):
                return last
        return self._exhausted(method, path, last, attempts)

    async def acall(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        json: Any = None,
        timeout: float | None = None,
    ) -> Response:
        """`call()` for asyncio."""
        method, path, send, body = self._prepare(method, path, headers, body, json)
        candidates = await self.ainstances()
        attempts: list[tuple[Instance, str]] = []
        last: Response | None = None
        for _ in range(len(candidates)):
            instance = self._pick(candidates, {i.address for i, _ in attempts})
            target = _Target(instance.secure, instance.host, instance.port)
            try:
                status, answer_headers, answer = await _exchange_async(
                    target, method, path, send, body, timeout or self.timeout, self.ssl_context
                )
            except (_ConnectFailed, _ExchangeFailed) as exc:
                if not self._after_failure(method, instance, exc, attempts):
                    raise CallError(f"{method} {path} to {self.app} failed: {exc}", attempts) from exc
                continue
            last = Response(status, answer_headers, answer, instance)
            if not self._retry_answer(method, last, attempts):
                return last
        return self._exhausted(method, path, last, attempts)

    def _after_failure(
        self, method: str, instance: Instance, exc: Exception, attempts: list[tuple[Instance, str]]
    ) -> bool:
        """Record a failed attempt; True when the call may go on to the next instance."""
        attempts.append((instance, str(exc)))
        self._eject(instance)
        log.info("%s %s failed on %s: %s", method, self.app, instance.address, exc)
        return isinstance(exc, _ConnectFailed) or method in IDEMPOTENT_METHODS

    def _retry_answer(self, method: str, response: Response, attempts: list[tuple[Instance, str]]) -> bool:
        assert response.instance is not None
        if response.status >= 500 and method in IDEMPOTENT_METHODS:
            attempts.append((response.instance, f"answered {response.status}"))
            return True
        self._restore(response.instance)
        return False

    def _exhausted(
        self, method: str, path: str, last: Response | None, attempts: list[tuple[Instance, str]]
    ) -> Response:
        if last is not None:
            return last
        if not attempts:
            raise NoInstancesError(f"no healthy instance of {self.app}")
        tried = "; ".join(f"{instance.address}: {reason}" for instance, reason in attempts)
        raise CallError(f"{method} {path} to {self.app} failed on every instance ({tried})", attempts)


# ------------------------------------------------------------------------------------------ CLI
def resolve_command(name: str, registry: str | None, timeout: float) -> int:
    """`forecourt resolve NAME`: print `host:port status` per instance; 1 when there are none."""
    url = registry or os.environ.get("FORECOURT_REGISTRY") or DEFAULT_REGISTRY_URL
    try:
        provider = EurekaProvider(url, timeout=timeout)
        instances = asyncio.run(provider.fetch(name))
    except DiscoveryError as exc:
        print(f"forecourt resolve: {exc}", file=sys.stderr)
        return 1
    if not instances:
        print(f"forecourt resolve: no instances of {name.upper()} registered at {url}", file=sys.stderr)
        return 1
    for instance in instances:
        print(f"{instance.address} {instance.status}")
    return 0
