"""`proxy-cache`: Kong's response cache, with RFC 9111 privacy rules, coalescing and stale-if-error.

Phases (PRIORITY 100, Kong's: after authentication, so the consumer is known; before
`compression`, so what is stored is uncompressed):

* access — decide whether the request may use the cache (else `X-Cache-Status: Bypass`), build the
  key, look it up. A fresh entry answers at once (`Hit`) through the same response phases as any
  plugin answer. Otherwise the request goes upstream as `Miss` (or `Refresh` when a stale entry
  was found); with `coalesce`, only the first one per key does and identical misses wait for it.
* response — decide whether the upstream response may be stored (policy.py); if so start
  capturing its body. An upstream error (500/502/503/504) with a stale entry still within its
  stale-if-error window is replaced by that entry (`X-Cache-Status: Stale`).
* body — capture (bounded by `max_object_bytes`) and store at the end; then release the waiters.
* log — release the waiters if the request ended any other way.

When the upstream cannot be reached at all the proxy answers 502/503/504 without a response
phase; the stale entry is offered to it through `ctx.shared["error_fallback"]`
(`forecourt.proxy.forward.Exchange.fail`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Final

from forecourt.pipeline import Context, Plugin, PluginEnv, PluginScope, Response, ResponseHead
from forecourt.plugins.proxy_cache.coalesce import Coalescer, Flight
from forecourt.plugins.proxy_cache.config import ProxyCacheConfig
from forecourt.plugins.proxy_cache.key import cache_key, key_prefix, variant_key
from forecourt.plugins.proxy_cache.policy import (
    EMPTY,
    ERROR_STATUSES,
    Directives,
    MediaTypeMatcher,
    Storable,
    parse_directives,
    seconds,
    storable,
)
from forecourt.plugins.proxy_cache.purge import PurgeLog
from forecourt.plugins.proxy_cache.stores import (
    CACHE_VERSION,
    CachedResponse,
    CacheStore,
    Lookup,
    MemoryStore,
    RedisStore,
    VaryIndex,
)
from forecourt.state import RedisSettings

__all__ = ["ERROR_FALLBACK", "STATE_KEY", "CacheState", "CacheStatus", "ErrorFallback", "ProxyCachePlugin"]

log = logging.getLogger(__name__)

STATE_KEY: Final = "proxy-cache"
"""`ctx.shared` entry holding the request's cache state (`CacheState`)."""

ERROR_FALLBACK: Final = "error_fallback"
"""`ctx.shared` entry (an `ErrorFallback`), asked by the proxy before it answers an error itself."""

ErrorFallback = Callable[[int], Response | None]
"""Given the gateway-made error status (502/503/504), a response to send instead, or None."""


class CacheStatus:
    """Values of `X-Cache-Status` (Kong's four, plus `Stale` for stale-if-error answers)."""

    MISS: Final = "Miss"
    HIT: Final = "Hit"
    REFRESH: Final = "Refresh"
    BYPASS: Final = "Bypass"
    STALE: Final = "Stale"


# Response headers never stored: hop-by-hop ones, framing, what the gateway sets on every answer,
# and the cache's own (recomputed on each hit).
_NOT_STORED = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        b"via",
        b"server",
        b"age",
        b"x-cache-status",
        b"x-cache-key",
    }
)

_coalescers: weakref.WeakKeyDictionary[CacheStore, Coalescer] = weakref.WeakKeyDictionary()


class CacheState:
    """One request's dealings with the cache (on `ctx.shared[STATE_KEY]`)."""

    __slots__ = (
        "capture",
        "chunks",
        "decision",
        "flight",
        "headers",
        "key",
        "read_only",
        "replacing",
        "size",
        "stale",
        "status",
        "stored_status",
    )

    def __init__(self) -> None:
        self.status: str = CacheStatus.BYPASS
        self.key: str | None = None
        self.read_only = False
        self.flight: Flight | None = None
        self.stale: CachedResponse | None = None
        self.replacing: CachedResponse | None = None
        self.capture = False
        self.chunks: list[bytes] = []
        self.size = 0
        self.decision: Storable | None = None
        self.headers: tuple[tuple[bytes, bytes], ...] = ()
        self.stored_status = 0

    def release(self) -> None:
        flight, self.flight = self.flight, None
        if flight is not None:
            flight.release()


class ProxyCachePlugin(Plugin[ProxyCacheConfig]):
    """Kong's `proxy-cache` (see the module docstring and docs/plugins/proxy-cache.md)."""

    name = "proxy-cache"
    priority = 100
    Config = ProxyCacheConfig

    def __init__(self, config: ProxyCacheConfig, scope: PluginScope, env: PluginEnv) -> None:
        super().__init__(config, scope, env)
        self._methods = frozenset(config.request_method)
        self._statuses = frozenset(config.response_code)
        self._content_type = MediaTypeMatcher(config.content_type)
        self._cache_control = config.cache_control
        self._vary_query = config.vary_query_params
        self._vary_headers = config.vary_headers
        headers = config.response_headers
        self._age_header = headers.age
        self._status_header = headers.x_cache_status
        self._key_header = headers.x_cache_key
        self._coalesce_timeout = config.coalesce_timeout / 1000
        self._redis: RedisSettings | None = self._redis_settings() if config.strategy == "redis" else None
        self._store: CacheStore | None = None
        self._coalescer = Coalescer()
        self._tasks: set[asyncio.Task[None]] = set()

    def _redis_settings(self) -> RedisSettings:
        return RedisSettings.from_plugin(self.config.redis, self.env.redis_url, "strategy 'redis'")

    # ------------------------------------------------------------------ lifecycle
    @property
    def store(self) -> CacheStore:
        """This instance's store (opened on first use; shared with every plugin naming it)."""
        return self._store or self._open_store()

    def _open_store(self) -> CacheStore:
        gateway = self.env.gateway or "default"
        store: CacheStore
        if self._redis is not None:
            store = RedisStore.acquire(self._redis, gateway)
        else:
            memory = self.config.memory
            purges = PurgeLog.for_gateway(self.env.state_dir, gateway)
            store = MemoryStore.acquire(gateway, memory.dictionary_name, memory.max_bytes, purges)
        self._store = store
        self._coalescer = _coalescers.setdefault(store, Coalescer())
        return store

    async def start(self) -> None:
        if self._store is None:
            self._open_store()

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        store, self._store = self._store, None
        if store is not None:
            await store.close()

    # ------------------------------------------------------------------ access
    def access(self, ctx: Context) -> Response | Awaitable[Response | None] | None:
        state = CacheState()
        ctx.shared[STATE_KEY] = state
        req = ctx.req
        method = req.method
        if method not in self._methods:
            return None
        cc = parse_directives(ctx.header_values(b"cache-control")) if self._cache_control else EMPTY
        if cc and ("no-store" in cc or "no-cache" in cc):
            return None
        consumer = ctx.consumer
        if ctx.header(b"authorization") is not None and (
            self.config.cache_authorized != "per_consumer" or consumer is None
        ):
            return None  # RFC 9111 §3.5: never share a response to an authorized request
        if method == "HEAD" and "GET" in self._methods:
            # A stored GET response answers HEAD (RFC 9110 §9.3.2); HEAD responses have no body
            # to store, so HEAD only ever reads.
            method = "GET"
            state.read_only = True
        path = req.path.lower() if self.config.ignore_uri_case else req.path
        prefix = key_prefix(consumer.id if consumer is not None else None, ctx.route.name)
        key = cache_key(prefix, method, path, req.query, req.headers, self._vary_query, self._vary_headers)
        state.key = key
        found = self._lookup(self.store, ctx, key)
        if found is None or isinstance(found, CachedResponse):
            return self._after_lookup(ctx, state, cc, found)
        return self._access_later(ctx, state, cc, found)

    async def _access_later(
        self, ctx: Context, state: CacheState, cc: Directives, pending: Awaitable[CachedResponse | None]
    ) -> Response | None:
        found = await pending
        result = self._after_lookup(ctx, state, cc, found)
        if result is None or isinstance(result, Response):
            return result
        return await result

    def _lookup(
        self, store: CacheStore, ctx: Context, key: str
    ) -> CachedResponse | Awaitable[CachedResponse | None] | None:
        found = store.get(key)
        if found is None or isinstance(found, CachedResponse):
            return found
        if isinstance(found, VaryIndex):
            inner = store.get(variant_key(key, ctx.req.headers, found.names))
            if inner is None or isinstance(inner, CachedResponse | VaryIndex):
                return inner if isinstance(inner, CachedResponse) else None
            return _response_only(inner)
        return self._lookup_later(store, ctx, key, found)

    async def _lookup_later(
        self, store: CacheStore, ctx: Context, key: str, pending: Awaitable[Lookup]
    ) -> CachedResponse | None:
        found = await pending
        if isinstance(found, VaryIndex):
            inner = store.get(variant_key(key, ctx.req.headers, found.names))
            if not (inner is None or isinstance(inner, CachedResponse | VaryIndex)):
                inner = await inner
            found = inner
        return found if isinstance(found, CachedResponse) else None

    def _after_lookup(
        self, ctx: Context, state: CacheState, cc: Directives, entry: CachedResponse | None
    ) -> Response | Awaitable[Response | None] | None:
        answer = self._judge(ctx, state, cc, entry)
        if answer is not None or not self.config.coalesce or state.read_only or state.key is None:
            return answer
        flight, leader = self._coalescer.join(state.key)
        if leader:
            state.flight = flight
            return None
        return self._wait(ctx, state, cc, flight)

    async def _wait(self, ctx: Context, state: CacheState, cc: Directives, flight: Flight) -> Response | None:
        """A miss while another request fetches the same key: wait for it, then look again."""
        await flight.wait(self._coalesce_timeout)
        assert state.key is not None
        found = self._lookup(self.store, ctx, state.key)
        if not (found is None or isinstance(found, CachedResponse)):
            found = await found
        return self._judge(ctx, state, cc, found)

    def _judge(
        self, ctx: Context, state: CacheState, cc: Directives, entry: CachedResponse | None
    ) -> Response | None:
        """A hit's answer, or None to go upstream (state says Miss or Refresh)."""
        if entry is not None and entry.version == CACHE_VERSION:
            now = time.time()
            age = entry.age(now)
            if self._acceptable(entry, age, cc):
                state.status = CacheStatus.HIT
                return Response(entry.status, entry.body, self._replay_headers(ctx, entry, age))
            state.status = CacheStatus.REFRESH
            if entry.usable_on_error(now):
                state.stale = entry
                ctx.shared[ERROR_FALLBACK] = _StaleFallback(self, ctx, state)
        else:
            state.status = CacheStatus.MISS
        if "only-if-cached" in cc:
            state.read_only = True
            return Response.error(504, "Gateway Timeout")
        return None

    def _acceptable(self, entry: CachedResponse, age: float, cc: Directives) -> bool:
        """Whether `entry` may answer this request (freshness, and the request's own limits)."""
        ttl = entry.ttl if self._cache_control else float(self.config.cache_ttl)
        if not cc:
            return age <= ttl
        if age > ttl:
            if "max-stale" not in cc:
                return False
            allowed = seconds(cc, "max-stale")
            if allowed is not None and age - ttl > allowed:
                return False
        max_age = seconds(cc, "max-age")
        if max_age is not None and age > max_age:
            return False
        min_fresh = seconds(cc, "min-fresh")
        return not (min_fresh is not None and ttl - age < min_fresh)

    def _replay_headers(self, ctx: Context, entry: CachedResponse, age: float) -> list[tuple[bytes, bytes]]:
        headers = list(entry.headers)
        if self._age_header or ctx.header(b"kong-debug") is not None:
            headers.append((b"Age", b"%d" % int(age)))
        return headers

    # ------------------------------------------------------------------ response
    def response(self, ctx: Context, head: ResponseHead) -> None:
        state: CacheState | None = ctx.shared.get(STATE_KEY)
        if state is None:
            return
        if state.status in (CacheStatus.MISS, CacheStatus.REFRESH):
            stale = state.stale
            if stale is not None and head.status in ERROR_STATUSES and stale.usable_on_error(time.time()):
                self._replace_with_stale(ctx, state, head, stale)
            elif not state.read_only:
                self._consider_storing(state, head)
        self._mark(ctx, state, head)

    def _consider_storing(self, state: CacheState, head: ResponseHead) -> None:
        config = self.config
        decision = storable(
            head.status,
            head.headers,
            statuses=self._statuses,
            content_type=self._content_type,
            cache_control=self._cache_control,
            cache_ttl=config.cache_ttl,
            storage_ttl=config.storage_ttl,
            stale_if_error=config.stale_if_error,
            now=time.time(),
        )
        if decision is None:
            state.status = CacheStatus.BYPASS
            state.release()
            return
        state.decision = decision
        state.capture = True
        state.stored_status = head.status
        state.headers = tuple(
            (n, v)
            for n, v in head.headers
            if (lname := n.lower()) not in _NOT_STORED and b"ratelimit" not in lname
        )

    def _replace_with_stale(
        self, ctx: Context, state: CacheState, head: ResponseHead, entry: CachedResponse
    ) -> None:
        """Answer with the stale entry instead of the upstream's error (stale-if-error)."""
        state.status = CacheStatus.STALE
        state.replacing = entry
        state.release()
        head.status = entry.status
        head.reason = b""
        head.headers = self._replay_headers(ctx, entry, entry.age(time.time()))

    def _mark(self, ctx: Context, state: CacheState, head: ResponseHead) -> None:
        debug = ctx.header(b"kong-debug") is not None
        if self._status_header or debug:
            head.set(b"X-Cache-Status", state.status.encode())
        if state.key is not None and (self._key_header or debug):
            head.set(b"X-Cache-Key", state.key.encode())

    # ------------------------------------------------------------------ body
    def body(self, ctx: Context, chunk: bytes, last: bool) -> bytes:
        state: CacheState | None = ctx.shared.get(STATE_KEY)
        if state is None:
            return chunk
        if state.replacing is not None:
            return state.replacing.body if last else b""
        if state.capture:
            if chunk:
                state.size += len(chunk)
                if state.size > self.config.max_object_bytes:
                    state.capture = False
                    state.chunks = []
                    state.release()
                    return chunk
                state.chunks.append(chunk)
            if last:
                state.capture = False
                self._store_response(ctx, state)
        return chunk

    def _store_response(self, ctx: Context, state: CacheState) -> None:
        decision = state.decision
        key = state.key
        assert decision is not None and key is not None
        body = b"".join(state.chunks)
        state.chunks = []
        now = time.time()
        entry = CachedResponse(
            status=state.stored_status,
            headers=state.headers,
            body=body,
            timestamp=now - decision.age,
            ttl=decision.ttl,
            stale_if_error=decision.stale_if_error,
        )
        store = self.store
        pending: list[Awaitable[None]] = []
        if decision.vary:
            first = store.set(key, VaryIndex(decision.vary, now), decision.storage_ttl)
            if first is not None:
                pending.append(first)
            key = variant_key(key, ctx.req.headers, decision.vary)
        second = store.set(key, entry, decision.storage_ttl)
        if second is not None:
            pending.append(second)
        if not pending:
            state.release()
            return
        # Waiters are released once the store has the entry, so their second look finds it.
        flight, state.flight = state.flight, None
        task = asyncio.get_running_loop().create_task(_settle(pending, flight))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ log
    def log(self, ctx: Context) -> None:
        state: CacheState | None = ctx.shared.get(STATE_KEY)
        if state is not None:
            state.chunks = []
            state.release()


class _StaleFallback:
    """`ctx.shared[ERROR_FALLBACK]`: the stale entry when the upstream could not answer at all."""

    __slots__ = ("ctx", "plugin", "state")

    def __init__(self, plugin: ProxyCachePlugin, ctx: Context, state: CacheState) -> None:
        self.plugin = plugin
        self.ctx = ctx
        self.state = state

    def __call__(self, status: int) -> Response | None:
        state = self.state
        entry = state.stale
        now = time.time()
        if status not in ERROR_STATUSES or entry is None or not entry.usable_on_error(now):
            return None
        state.status = CacheStatus.STALE
        state.stale = None  # the response phase must not replace this answer again
        state.release()
        return Response(
            entry.status, entry.body, self.plugin._replay_headers(self.ctx, entry, entry.age(now))
        )


async def _response_only(pending: Awaitable[Lookup]) -> CachedResponse | None:
    found = await pending
    return found if isinstance(found, CachedResponse) else None


async def _settle(pending: list[Awaitable[None]], flight: Flight | None) -> None:
    try:
        for step in pending:
            await step
    except Exception:  # a store's own failures are logged there; never leave waiters hanging
        log.exception("proxy-cache: storing a response failed")
    finally:
        if flight is not None:
            flight.release()
