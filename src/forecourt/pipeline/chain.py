"""Which plugin instances run for a request, and running their access phase.

Scoping follows Kong: for each plugin name exactly one configured instance applies, the most
specific one for the request's route, service and (once authenticated) consumer:

    route+service+consumer > route+consumer > service+consumer > route+service
        > consumer > route > service > global

Chains for "no consumer yet" are compiled per route when the config is loaded. When an
authentication plugin identifies a consumer and some plugin is scoped to consumers, the rest of
the request switches to that consumer's chain (compiled on first use and cached) from the next
priority on, which is when Kong's plugin iterator starts seeing consumer-scoped configs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any

from forecourt.pipeline.plugin import Plugin
from forecourt.pipeline.response import Response

if TYPE_CHECKING:
    from forecourt.pipeline.consumers import Consumer
    from forecourt.pipeline.context import Context

AnyPlugin = Plugin[Any]


def _order(plugin: AnyPlugin) -> tuple[int, str]:
    return (-plugin.priority, plugin.name)


def _specificity(plugin: AnyPlugin, route: str | None, service: str | None, consumer: str | None) -> int:
    """Kong's precedence rank of `plugin` for the request (lower wins), or -1 if it does not apply."""
    scope = plugin.scope
    if scope.route is not None and scope.route != route:
        return -1
    if scope.service is not None and scope.service != service:
        return -1
    if scope.consumer is not None and scope.consumer != consumer:
        return -1
    r, s, c = scope.route is not None, scope.service is not None, scope.consumer is not None
    ranks = {
        (True, True, True): 0,
        (True, False, True): 1,
        (False, True, True): 2,
        (True, True, False): 3,
        (False, False, True): 4,
        (True, False, False): 5,
        (False, True, False): 6,
        (False, False, False): 7,
    }
    return ranks[(r, s, c)]


class PluginSet:
    """Every enabled plugin instance of one config, for selecting per-route chains."""

    def __init__(self, plugins: Sequence[AnyPlugin]) -> None:
        self.plugins = list(plugins)
        self.consumer_scoped = any(p.scope.consumer is not None for p in self.plugins)

    def select(self, route: str | None, service: str | None, consumer: str | None) -> list[AnyPlugin]:
        best: dict[str, tuple[int, AnyPlugin]] = {}
        for plugin in self.plugins:
            rank = _specificity(plugin, route, service, consumer)
            if rank < 0:
                continue
            current = best.get(plugin.name)
            if current is None or rank < current[0]:
                best[plugin.name] = (rank, plugin)
        return sorted((p for _, p in best.values()), key=_order)

    def chain(self, route: str | None, service: str | None) -> PluginChain | None:
        selected = self.select(route, service, None)
        if not selected and not self.consumer_scoped:
            return None
        return PluginChain(self, route, service, None, selected)


class PluginChain:
    """The plugins of one route (for one consumer, or none yet), split by phase."""

    __slots__ = (
        "_by_consumer",
        "_switches",
        "access",
        "body",
        "consumer",
        "log",
        "plugins",
        "response",
        "route",
        "service",
        "set",
    )

    def __init__(
        self,
        plugin_set: PluginSet,
        route: str | None,
        service: str | None,
        consumer: str | None,
        plugins: list[AnyPlugin],
    ) -> None:
        self.set = plugin_set
        self.route = route
        self.service = service
        self.consumer = consumer
        self.plugins = tuple(plugins)
        self.access = tuple(p for p in plugins if type(p).overrides("access"))
        self.response = tuple(p for p in plugins if type(p).overrides("response"))
        self.body = tuple(p for p in plugins if type(p).overrides("body"))
        self.log = tuple(p for p in plugins if type(p).overrides("log"))
        self._by_consumer: dict[str, PluginChain] = {}
        # Only a consumer-less chain of a config with consumer-scoped plugins can switch chains
        # mid-phase; every other chain runs its access handlers in a plain loop.
        self._switches = plugin_set.consumer_scoped and consumer is None

    def for_consumer(self, consumer: Consumer) -> PluginChain:
        """This route's chain once `consumer` is known (self when nothing is consumer-scoped)."""
        if not self.set.consumer_scoped or self.consumer is not None:
            return self
        chain = self._by_consumer.get(consumer.name)
        if chain is None:
            names = {consumer.name, consumer.id}
            if consumer.username:
                names.add(consumer.username)
            plugins = self.set.plugins
            # Scopes name consumers by username or id; select with whichever the config used.
            scoped = {p.scope.consumer for p in plugins if p.scope.consumer is not None}
            key = next((n for n in names if n in scoped), consumer.name)
            chain = PluginChain(
                self.set, self.route, self.service, key, self.set.select(self.route, self.service, key)
            )
            self._by_consumer[consumer.name] = chain
        return chain

    # ------------------------------------------------------------------ access phase
    def run_access(self, ctx: Context) -> Response | Awaitable[Response | None] | None:
        """Run access handlers in priority order; stop at the first Response.

        Returns a plain value when no handler waited; otherwise an awaitable that finishes the
        phase (the caller turns that one into a task).
        """
        if self._switches:
            return self._run_from(ctx, self.access, 0)
        plugins = self.access
        for plugin in plugins:
            result = plugin.access(ctx)
            if result is not None:
                if isinstance(result, Response):
                    return result
                return self._finish_async(ctx, plugins, plugins.index(plugin), result)
        return None

    def _run_from(
        self, ctx: Context, plugins: tuple[AnyPlugin, ...], start: int
    ) -> Response | Awaitable[Response | None] | None:
        consumer = ctx.consumer
        index = start
        while index < len(plugins):
            plugin = plugins[index]
            result = plugin.access(ctx)
            if result is not None:
                if isinstance(result, Response):
                    return result
                return self._finish_async(ctx, plugins, index, result)
            if ctx.consumer is not consumer and ctx.consumer is not None:
                consumer = ctx.consumer
                if self.set.consumer_scoped:
                    plugins, index = self._switch_to_consumer(ctx, plugin)
                    continue
            index += 1
        return None

    def _switch_to_consumer(self, ctx: Context, after: AnyPlugin) -> tuple[tuple[AnyPlugin, ...], int]:
        assert ctx.consumer is not None
        chain = ctx.chain.for_consumer(ctx.consumer)
        ctx.chain = chain
        position = _order(after)
        remaining = chain.access
        index = next((i for i, p in enumerate(remaining) if _order(p) > position), len(remaining))
        return remaining, index

    async def _finish_async(
        self, ctx: Context, plugins: tuple[AnyPlugin, ...], index: int, pending: Awaitable[Response | None]
    ) -> Response | None:
        consumer = ctx.consumer
        while True:
            result = await pending
            if result is not None:
                return result
            plugin = plugins[index]
            if ctx.consumer is not consumer and ctx.consumer is not None and self.set.consumer_scoped:
                consumer = ctx.consumer
                plugins, index = self._switch_to_consumer(ctx, plugin)
            else:
                consumer = ctx.consumer
                index += 1
            # Continue synchronously until the next handler that waits.
            while index < len(plugins):
                plugin = plugins[index]
                step = plugin.access(ctx)
                if step is None:
                    if ctx.consumer is not consumer and ctx.consumer is not None and self.set.consumer_scoped:
                        consumer = ctx.consumer
                        plugins, index = self._switch_to_consumer(ctx, plugin)
                        continue
                    consumer = ctx.consumer
                    index += 1
                    continue
                if isinstance(step, Response):
                    return step
                pending = step
                break
            else:
                return None
