"""`rate-limiting`: Kong's plugin — fixed windows per second … year, counted locally or in Redis.

Behaviour follows Kong 3.x (`kong/plugins/rate-limiting`): the same config fields and defaults,
PRIORITY 910, windows aligned to the start of their period (UTC), the identifier chosen by
`limit_by` with the client IP as fallback, `X-RateLimit-Limit-<Period>`,
`X-RateLimit-Remaining-<Period>` and `RateLimit-Limit/-Remaining/-Reset` on responses (the
`RateLimit-*` trio describes the window with the fewest requests left, the longer one on a tie), and
`error_code`/`error_message` (429, "API rate limit exceeded") with `Retry-After` when a limit is hit.

Where Forecourt is stricter than Kong: a request is checked and counted in one atomic step of the
counter store (`forecourt.state`), so concurrent requests never overshoot a limit — Kong reads
the usage, then increments from a timer. Policy `local` is exact across the worker processes of a
node (a shared memory-mapped table), policy `redis` across nodes (one Lua script per batch).
Policy `cluster` needs Kong's database, which DB-less Kong rejects too.

The client IP is the socket peer unless that peer is one of the proxies given by
`forecourt run --trusted-ips`; then it is the right-most address of `X-Forwarded-For` that is not
a trusted proxy, so a client cannot pick its identity by sending the header itself.
"""

from __future__ import annotations

import calendar
import ipaddress
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence

from forecourt.pipeline.context import Context, ResponseHead
from forecourt.pipeline.plugin import Plugin, PluginEnv, PluginScope
from forecourt.pipeline.response import Response
from forecourt.plugins.rate_limiting_config import PERIODS, RateLimitingConfig
from forecourt.state import (
    CounterStore,
    RedisCounters,
    RedisSettings,
    SharedCounterTable,
    StoreError,
    Usage,
    Window,
)

log = logging.getLogger(__name__)

_FIXED_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
SHARED_KEY = "rate-limiting"
"""`ctx.shared` entry holding the response headers the access phase computed."""

REJECTED_KEY = "rate_limited"
"""`ctx.shared` flag set on the requests this plugin refuses (the `prometheus` plugin counts them)."""

_ERROR_LOG_INTERVAL = 5.0
_KEYS_CACHED = 4096


# ---------------------------------------------------------------------- client address
class ClientAddress:
    """The client IP as a limit sees it: the socket peer, or `X-Forwarded-For` behind trusted proxies.

    With trusted proxies, the header is read right to left and the first address that is not a
    trusted proxy is the client; an unreadable entry stops the walk at the last trusted hop, so a
    forged header can only make the client look like one of our own proxies, never like someone
    else.
    """

    def __init__(self, trusted: Sequence[str]) -> None:
        self.networks = tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in trusted)
        self._verdicts: dict[str, bool] = {}

    def is_trusted(self, address: str) -> bool:
        verdict = self._verdicts.get(address)
        if verdict is None:
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                verdict = False
            else:
                verdict = any(ip in network for network in self.networks)
            if len(self._verdicts) >= 4096:
                self._verdicts.clear()
            self._verdicts[address] = verdict
        return verdict

    def resolve(self, peer: str, forwarded: Sequence[bytes]) -> str:
        if not self.networks or not forwarded or not self.is_trusted(peer):
            return peer
        hops = [hop.strip() for value in forwarded for hop in value.decode("latin-1").split(",")]
        last = peer
        for hop in reversed(hops):
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                return last
            if not self.is_trusted(hop):
                return hop
            last = hop
        return last


# ---------------------------------------------------------------------- windows
def window_bounds(period: str, now: int) -> tuple[int, int]:
    """`[start, end)` of the fixed window of `period` holding `now` (UTC epoch seconds)."""
    length = _FIXED_SECONDS.get(period)
    if length is not None:
        start = now - now % length
        return start, start + length
    t = time.gmtime(now)
    if period == "month":
        start = calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0))
        year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
        return start, calendar.timegm((year, month, 1, 0, 0, 0))
    if period == "year":
        return calendar.timegm((t.tm_year, 1, 1, 0, 0, 0)), calendar.timegm((t.tm_year + 1, 1, 1, 0, 0, 0))
    raise ValueError(f"unknown period {period!r}")


def _number(value: float) -> bytes:
    """A header value as Kong prints Lua numbers: integers without a fraction."""
    if type(value) is int or value == int(value):
        return b"%d" % int(value)
    return repr(value).encode()


# ---------------------------------------------------------------------- the plugin
class RateLimitingPlugin(Plugin[RateLimitingConfig]):
    """Kong's `rate-limiting` (see the module docstring)."""

    name = "rate-limiting"
    priority = 910
    Config = RateLimitingConfig

    def __init__(self, config: RateLimitingConfig, scope: PluginScope, env: PluginEnv) -> None:
        super().__init__(config, scope, env)
        periods = [(p, getattr(config, p)) for p in PERIODS if getattr(config, p) is not None]
        self._periods = tuple(p for p, _ in periods)
        # Integral limits stay ints, so header values format without float arithmetic.
        self._limits = tuple(int(limit) if limit == int(limit) else float(limit) for _, limit in periods)
        # Kong refuses when `limit - usage <= 0`: at most ceil(limit) requests pass.
        self._capacities = tuple(math.ceil(limit) for limit in self._limits)
        self._limit_headers = tuple(
            (f"X-RateLimit-Limit-{p.capitalize()}".encode(), _number(limit)) for p, limit in periods
        )
        self._remaining_names = tuple(
            f"X-RateLimit-Remaining-{p.capitalize()}".encode() for p in self._periods
        )
        self._header_names = frozenset(
            [name.lower() for name, _ in self._limit_headers]
            + [name.lower() for name in self._remaining_names]
            + [b"ratelimit-limit", b"ratelimit-remaining", b"ratelimit-reset"]
        )
        self._hide_headers = config.hide_client_headers
        self._integral = all(type(limit) is int for limit in self._limits)
        self._second = -1
        self._windows: tuple[Window, ...] = ()
        self._resets: tuple[int, ...] = ()
        self._reset_headers: tuple[tuple[bytes, bytes], ...] = ()
        self._key_prefix = "|".join(
            [env.gateway, scope.route or "", scope.service or "", scope.consumer or "", ""]
        )
        try:
            self._client_address = ClientAddress(env.trusted_ips)
        except ValueError as exc:
            raise ValueError(f"invalid trusted proxy address: {exc}") from exc
        self._identify = self._identifier_function()
        self._redis: RedisSettings | None = None
        if config.policy == "redis":
            self._redis = self._redis_settings()
        self._store: CounterStore | None = None
        self._last_error_log = 0.0
        self._suppressed_errors = 0

    def _redis_settings(self) -> RedisSettings:
        return RedisSettings.from_plugin(self.config.redis, self.env.redis_url, "policy 'redis'")

    # ------------------------------------------------------------------ lifecycle
    def _open_store(self) -> CounterStore:
        store: CounterStore
        if self._redis is not None:
            store = RedisCounters.acquire(self._redis)
        else:
            store = SharedCounterTable.for_state_dir(self.env.state_dir, self.env.gateway or "default")
        self._store = store
        return store

    async def start(self) -> None:
        if self._store is None:
            self._open_store()

    async def close(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            await store.close()

    # ------------------------------------------------------------------ identifiers
    def client_ip(self, ctx: Context) -> str:
        peer = ctx.client.client_ip
        if not self._client_address.networks:
            return peer
        return self._client_address.resolve(peer, ctx.header_values(b"x-forwarded-for"))

    def _identifier_function(self) -> Callable[[Context], str]:
        """The function giving a request's counter key (this instance's prefix and identifier)."""
        limit_by = self.config.limit_by
        ip = self.client_ip
        prefix = self._key_prefix
        by_ip = prefix + "ip:"
        if limit_by == "ip":
            return lambda ctx: by_ip + ip(ctx)
        if limit_by == "consumer":
            by_consumer = prefix + "consumer:"
            by_credential = prefix + "credential:"
            keys: dict[str, str] = {}

            def consumer(ctx: Context) -> str:
                if ctx.consumer is not None:
                    # One key object per consumer: its hash is computed once, not per request.
                    consumer_id = ctx.consumer.id
                    key = keys.get(consumer_id)
                    if key is None:
                        if len(keys) >= _KEYS_CACHED:
                            keys.clear()
                        key = keys[consumer_id] = by_consumer + consumer_id
                    return key
                if ctx.credential is not None:
                    return by_credential + ctx.credential.id
                return by_ip + ip(ctx)

            return consumer
        if limit_by == "credential":
            by_credential = prefix + "credential:"

            def credential(ctx: Context) -> str:
                if ctx.credential is not None:
                    return by_credential + ctx.credential.id
                return by_ip + ip(ctx)

            return credential
        if limit_by == "service":
            by_service = prefix + "service:"

            def service(ctx: Context) -> str:
                plan = ctx.route.service
                return by_service + plan.name if plan is not None else by_ip + ip(ctx)

            return service
        if limit_by == "header":
            header = (self.config.header_name or "").encode("latin-1")
            by_header = prefix + "header:"

            def by_header_value(ctx: Context) -> str:
                value = ctx.header(header)
                return by_header + value.decode("latin-1") if value is not None else by_ip + ip(ctx)

            return by_header_value
        wanted = self.config.path
        by_path = prefix + "path:"

        def path(ctx: Context) -> str:
            return by_path + ctx.req.path if ctx.req.path == wanted else by_ip + ip(ctx)

        return path

    # ------------------------------------------------------------------ access
    def windows(self, now: int) -> tuple[Window, ...]:
        """The current window of every configured period (rebuilt once a second)."""
        if now != self._second:
            self._refresh(now)
        return self._windows

    def _refresh(self, now: int) -> None:
        """Windows, seconds to their ends and `RateLimit-Reset` headers, for the second `now`."""
        bounds = [window_bounds(p, now) for p in self._periods]
        self._windows = tuple(
            Window(p, start, end, capacity)
            for p, (start, end), capacity in zip(self._periods, bounds, self._capacities, strict=True)
        )
        self._resets = tuple(max(end - now, 1) for _, end in bounds)
        self._reset_headers = tuple((b"RateLimit-Reset", b"%d" % reset) for reset in self._resets)
        self._second = now

    def access(self, ctx: Context) -> Response | Awaitable[Response | None] | None:
        now = int(time.time())
        if now != self._second:
            self._refresh(now)
        windows = self._windows
        key = self._identify(ctx)
        store = self._store or self._open_store()
        try:
            result = store.take(key, windows)
        except (StoreError, OSError) as exc:
            return self._store_failed(exc)
        if isinstance(result, Usage):
            return self._decide(ctx, result, self._resets, self._reset_headers)
        return self._decide_later(ctx, result, self._resets, self._reset_headers)

    async def _decide_later(
        self,
        ctx: Context,
        pending: Awaitable[Usage],
        resets: tuple[int, ...],
        reset_headers: tuple[tuple[bytes, bytes], ...],
    ) -> Response | None:
        try:
            usage = await pending
        except (StoreError, OSError) as exc:
            return self._store_failed(exc)
        return self._decide(ctx, usage, resets, reset_headers)

    def _decide(
        self,
        ctx: Context,
        usage: Usage,
        resets: tuple[int, ...],
        reset_headers: tuple[tuple[bytes, bytes], ...],
    ) -> Response | None:
        """Record the response headers for `usage`; refuse when it was not counted.

        `resets` and `reset_headers` belong to the second the windows were taken in.
        """
        allowed, counts = usage
        limits = self._limits
        if len(counts) == 1:
            chosen = 0
            left = limits[0] - counts[0]
            fewest = left if left > 0 else 0
            if not self._hide_headers:
                text = b"%d" % fewest if self._integral else _number(fewest)
                limit_header = self._limit_headers[0]
                ctx.shared[SHARED_KEY] = (
                    limit_header,
                    (self._remaining_names[0], text),
                    (b"RateLimit-Limit", limit_header[1]),
                    (b"RateLimit-Remaining", text),
                    reset_headers[0],
                )
        else:
            # The window the RateLimit-* headers describe: fewest left, the longer one on a tie.
            chosen = 0
            fewest = math.inf
            remaining: list[float] = []
            for index, count in enumerate(counts):
                left = limits[index] - count
                left = max(left, 0)
                remaining.append(left)
                if left <= fewest:
                    fewest = left
                    chosen = index
            if not self._hide_headers:
                headers: list[tuple[bytes, bytes]] = []
                names = self._remaining_names
                for index, limit_header in enumerate(self._limit_headers):
                    headers.append(limit_header)
                    headers.append((names[index], _number(remaining[index])))
                headers.append((b"RateLimit-Limit", self._limit_headers[chosen][1]))
                headers.append((b"RateLimit-Remaining", _number(fewest)))
                headers.append(reset_headers[chosen])
                ctx.shared[SHARED_KEY] = headers
        if allowed:
            return None
        ctx.shared[REJECTED_KEY] = True
        return Response.error(
            self.config.error_code,
            self.config.error_message,
            headers=[(b"Retry-After", b"%d" % resets[chosen])],
        )

    def _store_failed(self, exc: Exception) -> Response | None:
        now = time.monotonic()
        if now - self._last_error_log >= _ERROR_LOG_INTERVAL:
            more = (
                f" ({self._suppressed_errors} more since the last report)" if self._suppressed_errors else ""
            )
            action = (
                "letting requests through (fault_tolerant)" if self.config.fault_tolerant else "answering 500"
            )
            log.error("rate-limiting: counter store failed: %s; %s%s", exc, action, more)
            self._last_error_log = now
            self._suppressed_errors = 0
        else:
            self._suppressed_errors += 1
        if self.config.fault_tolerant:
            return None
        return Response.error(500, "An unexpected error occurred")

    # ------------------------------------------------------------------ response
    def response(self, ctx: Context, head: ResponseHead) -> None:
        headers = ctx.shared.get(SHARED_KEY)
        if headers is None:
            return
        # Ours replace the upstream's own (Kong's set_headers). Every name of ours contains
        # "ratelimit", so a head without it anywhere keeps its bytes (no header list is parsed).
        if head.may_contain(b"ratelimit"):
            names = self._header_names
            upstream = head.headers
            for name, _ in upstream:
                if name.lower() in names:
                    head.headers = [h for h in upstream if h[0].lower() not in names]
                    break
        head.extend(headers)
