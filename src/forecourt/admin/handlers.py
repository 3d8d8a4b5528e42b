"""The admin API's endpoints (Kong's DB-less Admin API subset) over the gateways of this process.

Every endpoint answers for the default gateway (the first FILE) at its Kong path, and for any
gateway at `/gateways/{name}/...` (name = the file's stem). Reads look at the plan the gateway is
serving right now; `POST /config` validates and swaps through `Gateway.apply_text`, one swap at a
time per gateway.

The active config's text and hash are tracked here: the text posted to `/config`, or else the
gateway's file as it was when its current plan was first seen (a reload from the file).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from forecourt import __version__
from forecourt.admin.counters import StatusPublisher
from forecourt.admin.declarative import BodyError, config_error_body, config_text
from forecourt.admin.health import (
    balancer_health,
    breakers_view,
    checks_enabled,
    discovery_state,
    listed_targets,
    target_status,
)
from forecourt.admin.server import AdminRequest, AdminResponse
from forecourt.admin.views import EntityViews, redact_document
from forecourt.config import ConfigError, GatewayConfig, Upstream

if TYPE_CHECKING:
    from forecourt.gateway import Gateway
    from forecourt.pipeline.registry import PluginRegistry
    from forecourt.plan import Plan

__all__ = ["AdminAPI", "GatewayEntry"]

JSON = dict[str, Any]
EMPTY_HASH = "0" * 32
_NOT_FOUND = AdminResponse.message(404, "Not found")
_DEFAULT_PAGE = 100
_MAX_PAGE = 1000
_GET = frozenset({"GET", "HEAD"})
_GET_POST = frozenset({"GET", "HEAD", "POST"})
_DELETE = frozenset({"DELETE"})
_GET_DELETE = frozenset({"GET", "HEAD", "DELETE"})


def config_hash(text: str | None) -> str:
    """Kong's `configuration_hash`: 32 hex digits (here the MD5 of the config text)."""
    if text is None:
        return EMPTY_HASH
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


@dataclass(frozen=True, slots=True)
class ActiveConfig:
    """What the admin knows about the plan a gateway serves: its text, hash and load time."""

    plan: Plan
    text: str | None
    hash: str
    views: EntityViews


class GatewayEntry:
    """One gateway as the admin API sees it."""

    def __init__(self, gateway: Gateway, index: int) -> None:
        self.gateway = gateway
        self.index = index
        self.name = gateway.name
        self.lock = asyncio.Lock()
        self._active: ActiveConfig | None = None

    def active(self) -> ActiveConfig | None:
        """The active config (None before the gateway started).

        Views are rebuilt only when the gateway swapped plans (a reload, a `POST /config`).
        """
        runtime = self.gateway.runtime
        if runtime is None:
            return None
        plan = runtime.plan
        text = self.gateway.config_text
        cached = self._active
        if cached is None or cached.plan is not plan or cached.text is not text:
            views = EntityViews(self.name, plan.config, int(time.time()))
            cached = self._active = ActiveConfig(plan, text, config_hash(text), views)
        return cached

    def listen(self) -> list[str]:
        return [
            f"{listener.host}:{listener.port}" + (" ssl" if listener.ssl else "")
            for listener in self.gateway.listening
        ]


@dataclass(slots=True)
class Call:
    """One routed admin request: the request, its gateway and the `{name}` parts of its path."""

    request: AdminRequest
    entry: GatewayEntry
    active: ActiveConfig
    args: list[str]

    @property
    def config(self) -> GatewayConfig:
        return self.active.plan.config

    @property
    def views(self) -> EntityViews:
        return self.active.views


Handler = Callable[[Call], Awaitable[AdminResponse]]


class AdminAPI:
    """Routes admin requests to endpoints; `handle` is what the admin server calls."""

    def __init__(
        self, gateways: Sequence[Gateway], listen: str, status: StatusPublisher, *, workers: int = 1
    ) -> None:
        if not gateways:
            raise ValueError("the admin API needs at least one gateway")
        self.entries = [GatewayEntry(gateway, index) for index, gateway in enumerate(gateways)]
        self.by_name = {entry.name: entry for entry in reversed(self.entries)}
        self.listen = listen
        self.status = status
        self.workers = workers
        self.hostname = socket.gethostname()
        self.node_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"forecourt.{self.hostname}.{listen}"))
        self.routes: list[tuple[tuple[str, ...], frozenset[str], Handler]] = [
            ((), _GET, self.node_info),
            (("status",), _GET, self.node_status),
            (("metrics",), _GET, self.metrics),
            (("config",), _GET_POST, self.config_endpoint),
            (("services",), _GET, self.list_services),
            (("services", "*"), _GET, self.get_service),
            (("services", "*", "routes"), _GET, self.service_routes),
            (("services", "*", "plugins"), _GET, self.service_plugins),
            (("services", "*", "breakers"), _GET, self.service_breakers),
            (("routes",), _GET, self.list_routes),
            (("routes", "*"), _GET, self.get_route),
            (("routes", "*", "service"), _GET, self.route_service),
            (("routes", "*", "plugins"), _GET, self.route_plugins),
            (("upstreams",), _GET, self.list_upstreams),
            (("upstreams", "*"), _GET, self.get_upstream),
            (("upstreams", "*", "targets"), _GET, self.upstream_targets),
            (("upstreams", "*", "health"), _GET, self.upstream_health),
            (("certificates",), _GET, self.list_certificates),
            (("certificates", "*"), _GET, self.get_certificate),
            (("consumers",), _GET, self.list_consumers),
            (("consumers", "*"), _GET, self.get_consumer),
            (("consumers", "*", "plugins"), _GET, self.consumer_plugins),
            (("plugins",), _GET, self.list_plugins),
            (("plugins", "enabled"), _GET, self.enabled_plugins),
            (("plugins", "*"), _GET, self.get_plugin),
            (("proxy-cache",), _DELETE, self.proxy_cache),
            (("proxy-cache", "*"), _GET_DELETE, self.proxy_cache),
            (("proxy-cache", "*", "caches", "*"), _GET_DELETE, self.proxy_cache),
        ]

    @property
    def default(self) -> GatewayEntry:
        return self.entries[0]

    # ------------------------------------------------------------------ dispatch
    async def handle(self, request: AdminRequest) -> AdminResponse:
        segments = request.segments
        entry = self.default
        if segments[:1] == ["gateways"]:
            if len(segments) == 1:
                return self._method_check(request, _GET) or self.list_gateways(request)
            found = self.by_name.get(segments[1])
            if found is None:
                return _NOT_FOUND
            entry, segments = found, segments[2:]
        for pattern, methods, handler in self.routes:
            args = _match(pattern, segments)
            if args is None:
                continue
            refused = self._method_check(request, methods)
            if refused is not None:
                return refused
            active = entry.active()
            if active is None:
                return AdminResponse.message(503, f"gateway {entry.name} is not running")
            return await handler(Call(request, entry, active, args))
        return _NOT_FOUND

    @staticmethod
    def _method_check(request: AdminRequest, methods: frozenset[str]) -> AdminResponse | None:
        if request.method in methods:
            return None
        allowed = ", ".join(sorted(methods))
        response = AdminResponse.message(405, "Method not allowed")
        response.headers.append(("Allow", allowed))
        return response

    # ------------------------------------------------------------------ node
    def list_gateways(self, request: AdminRequest) -> AdminResponse:
        data = []
        for entry in self.entries:
            active = entry.active()
            runtime = entry.gateway.runtime
            data.append(
                {
                    "name": entry.name,
                    "file": entry.gateway.path,
                    "default": entry is self.default,
                    "configuration_hash": active.hash if active else EMPTY_HASH,
                    "listen": entry.listen(),
                    "running": runtime is not None,
                }
            )
        return AdminResponse.json(200, {"data": data, "next": None})

    async def node_info(self, call: Call) -> AdminResponse:
        enabled = sorted({p.name for e in self.entries if (a := e.active()) for p in a.plan.config.plugins})
        workers = self.status.workers()
        gateway = call.entry.gateway
        options = gateway.options
        body = {
            "version": __version__,
            "tagline": "Welcome to forecourt",
            "hostname": self.hostname,
            "node_id": self.node_id,
            "pids": {
                "master": os.getppid() if options.state_dir is not None else os.getpid(),
                "workers": [w.pid for w in workers if w.alive],
            },
            "plugins": {
                "available_on_server": available_plugins(gateway.builder.registry),
                "enabled_in_cluster": enabled,
            },
            "configuration": {
                "database": "off",
                "role": "traditional",
                "admin_listen": [self.listen],
                "proxy_listen": call.entry.listen(),
                "declarative_config": gateway.path,
                "declarative_configs": [e.gateway.path for e in self.entries],
                "nginx_worker_processes": self.workers,
                "dns_resolver": [options.dns_resolver] if options.dns_resolver else None,
                "gateway": call.entry.name,
            },
        }
        return AdminResponse.json(200, body)

    async def node_status(self, call: Call) -> AdminResponse:
        scoped = call.request.segments[:1] == ["gateways"]
        counters = self.status.totals(call.entry.index if scoped else None)
        workers = self.status.workers()
        body = {
            "database": {"reachable": True},
            "server": counters.as_dict(),
            "memory": {
                "workers": [{"pid": w.pid, "rss": f"{w.rss / 1048576:.2f} MiB"} for w in workers if w.alive]
            },
            "configuration_hash": call.active.hash,
        }
        return AdminResponse.json(200, body)

    async def metrics(self, call: Call) -> AdminResponse:
        """Prometheus metrics of the node (observability/metrics.py; every gateway, all workers)."""
        from forecourt.observability.metrics import ScrapeSources, render_metrics

        plans = {e.name: active.plan for e in self.entries if (active := e.active()) is not None}
        sources = ScrapeSources(self.node_id, __version__, self.status.totals().as_dict(), plans)
        content_type, body = render_metrics(sources)
        return AdminResponse(200, body, content_type)

    # ------------------------------------------------------------------ config
    async def config_endpoint(self, call: Call) -> AdminResponse:
        if call.request.method == "POST":
            return await self.post_config(call)
        text = call.active.text
        shown = text
        if text is not None:
            try:
                document = yaml.safe_load(text)
            except yaml.YAMLError:
                document = None
            redacted = redact_document(document)
            if document is not None and redacted != document:
                shown = yaml.safe_dump(redacted, sort_keys=False)
        body = {"config": shown, "configuration_hash": call.active.hash, "file": call.entry.gateway.path}
        return AdminResponse.json(200, body)

    async def post_config(self, call: Call) -> AdminResponse:
        request = call.request
        try:
            text = config_text(request.headers.get("content-type", ""), request.body)
        except BodyError as exc:
            return AdminResponse.message(400, str(exc))
        digest = config_hash(text)
        entry = call.entry
        async with entry.lock:
            current = entry.active()
            if request.flag("check_hash") and current is not None and current.hash == digest:
                return AdminResponse(304, content_type="")
            try:
                await asyncio.shield(entry.gateway.apply_text(text))
            except ConfigError as exc:
                return AdminResponse.json(400, config_error_body(exc, text))
            except OSError as exc:
                return AdminResponse.message(500, f"could not apply the configuration: {exc}")
            active = entry.active()
        assert active is not None
        config = active.plan.config
        summary = {
            "gateway": entry.name,
            "configuration_hash": active.hash,
            "entities": {
                "services": len(config.services),
                "routes": len(config.routes),
                "upstreams": len(config.upstreams),
                "targets": sum(len(u.targets) for u in config.upstreams),
                "consumers": len(config.consumers),
                "plugins": len(config.plugins),
                "certificates": len(config.certificates),
                "ca_certificates": len(config.ca_certificates),
            },
        }
        return AdminResponse.json(201, summary)

    # ------------------------------------------------------------------ services and routes
    async def list_services(self, call: Call) -> AdminResponse:
        return _page(call.request, [call.views.service(s) for s in call.config.services])

    def _service(self, call: Call, key: str) -> JSON | None:
        views = call.views
        for service in call.config.services:
            if key in (service.name, views.service_id(service)):
                return views.service(service)
        return None

    async def get_service(self, call: Call) -> AdminResponse:
        found = self._service(call, call.args[0])
        return AdminResponse.json(200, found) if found else _NOT_FOUND

    async def service_routes(self, call: Call) -> AdminResponse:
        service = self._service(call, call.args[0])
        if service is None:
            return _NOT_FOUND
        routes = [call.views.route(r) for r in call.config.routes if r.service == service["name"]]
        return _page(call.request, routes)

    async def service_plugins(self, call: Call) -> AdminResponse:
        service = self._service(call, call.args[0])
        if service is None:
            return _NOT_FOUND
        return self._plugins(call, lambda p: p.service == service["name"])

    async def service_breakers(self, call: Call) -> AdminResponse:
        """Circuit breaker state per target of the service (Forecourt extension), and its retry budget."""
        service = self._service(call, call.args[0])
        plan = call.active.plan.services.get(service["name"]) if service is not None else None
        if service is None or plan is None:
            return _NOT_FOUND
        body = {
            "data": breakers_view(plan),
            "circuit_breaker": service.get("circuit_breaker"),
            "retry_budget": plan.retry_budget.as_dict(),
        }
        return AdminResponse.json(200, body)

    async def list_routes(self, call: Call) -> AdminResponse:
        return _page(call.request, [call.views.route(r) for r in call.config.routes])

    def _route(self, call: Call, key: str) -> JSON | None:
        views = call.views
        for route in call.config.routes:
            if key in (route.name, views.route_id(route)):
                return views.route(route)
        return None

    async def get_route(self, call: Call) -> AdminResponse:
        found = self._route(call, call.args[0])
        return AdminResponse.json(200, found) if found else _NOT_FOUND

    async def route_service(self, call: Call) -> AdminResponse:
        route = self._route(call, call.args[0])
        if route is None or route["service"] is None:
            return _NOT_FOUND
        found = self._service(call, route["service"]["id"])
        return AdminResponse.json(200, found) if found else _NOT_FOUND

    async def route_plugins(self, call: Call) -> AdminResponse:
        route = self._route(call, call.args[0])
        if route is None:
            return _NOT_FOUND
        return self._plugins(call, lambda p: p.route == route["name"])

    # ------------------------------------------------------------------ upstreams
    async def list_upstreams(self, call: Call) -> AdminResponse:
        return _page(call.request, [call.views.upstream(u) for u in call.config.upstreams])

    def _upstream(self, call: Call, key: str) -> Upstream | None:
        views = call.views
        return next((u for u in call.config.upstreams if key in (u.name, views.upstream_id(u))), None)

    async def get_upstream(self, call: Call) -> AdminResponse:
        upstream = self._upstream(call, call.args[0])
        return AdminResponse.json(200, call.views.upstream(upstream)) if upstream else _NOT_FOUND

    async def upstream_targets(self, call: Call) -> AdminResponse:
        upstream = self._upstream(call, call.args[0])
        if upstream is None:
            return _NOT_FOUND
        return _page(call.request, [call.views.target(t) for t in upstream.targets])

    async def upstream_health(self, call: Call) -> AdminResponse:
        upstream = self._upstream(call, call.args[0])
        if upstream is None:
            return _NOT_FOUND
        source = call.active.plan.upstreams.get(upstream.name)
        endpoints = list(source.balancer.endpoints) if source is not None else []
        views = call.views
        if call.request.flag("balancer_health"):
            health, weights = balancer_health(upstream, endpoints)
            data = {
                "id": views.upstream_id(upstream),
                "health": str(health),
                "details": {"healthy": health != "UNHEALTHY", "weight": weights},
            }
            if (discovery := discovery_state(source)) is not None:
                data["discovery"] = discovery
            return AdminResponse.json(200, {"data": data})
        checks_on = checks_enabled(upstream.healthchecks)
        checker = call.active.plan.health.get(upstream.name)  # reason and counters per address
        items = []
        for target in listed_targets(upstream, source):
            status = target_status(target, endpoints, checks_on)
            item = views.target(target)
            item["health"] = str(status.health)
            item["data"] = {
                "addresses": [
                    {
                        "ip": ep.ip,
                        "port": ep.port,
                        "weight": ep.weight,
                        "health": "HEALTHY" if ep.healthy else "UNHEALTHY",
                        **(checker.details(ep) if checker is not None else {}),
                    }
                    for ep in status.endpoints
                ]
            }
            items.append(item)
        extra: dict[str, Any] = {"node_id": self.node_id, "total": len(items)}
        if (discovery := discovery_state(source)) is not None:
            extra["discovery"] = discovery
        response = _page(call.request, items, extra=extra)
        return response

    # ------------------------------------------------------------------ certificates, consumers, plugins
    async def list_certificates(self, call: Call) -> AdminResponse:
        views = call.views
        return _page(call.request, [views.certificate(i, c) for i, c in enumerate(call.config.certificates)])

    async def get_certificate(self, call: Call) -> AdminResponse:
        views = call.views
        for index, cert in enumerate(call.config.certificates):
            if call.args[0] == views.certificate_id(index, cert):
                return AdminResponse.json(200, views.certificate(index, cert))
        return _NOT_FOUND

    async def list_consumers(self, call: Call) -> AdminResponse:
        return _page(call.request, [call.views.consumer(c) for c in call.config.consumers])

    def _consumer(self, call: Call, key: str) -> JSON | None:
        views = call.views
        for consumer in call.config.consumers:
            if key in (consumer.username, consumer.custom_id, views.consumer_id(consumer)):
                return views.consumer(consumer) | {"_name": consumer.name}
        return None

    async def get_consumer(self, call: Call) -> AdminResponse:
        found = self._consumer(call, call.args[0])
        if found is None:
            return _NOT_FOUND
        found.pop("_name")
        return AdminResponse.json(200, found)

    async def consumer_plugins(self, call: Call) -> AdminResponse:
        consumer = self._consumer(call, call.args[0])
        if consumer is None:
            return _NOT_FOUND
        return self._plugins(call, lambda p: p.consumer == consumer["_name"])

    def _plugins(self, call: Call, keep: Callable[[Any], bool]) -> AdminResponse:
        views = call.views
        plugins = [views.plugin(i, p) for i, p in enumerate(call.config.plugins) if keep(p)]
        return _page(call.request, plugins)

    async def list_plugins(self, call: Call) -> AdminResponse:
        return self._plugins(call, lambda p: True)

    async def enabled_plugins(self, call: Call) -> AdminResponse:
        names = sorted({p.name for p in call.config.plugins if p.enabled})
        return AdminResponse.json(200, {"enabled_plugins": names})

    async def get_plugin(self, call: Call) -> AdminResponse:
        views = call.views
        for index, plugin in enumerate(call.config.plugins):
            if call.args[0] in (views.plugin_id(index, plugin), plugin.instance_name):
                return AdminResponse.json(200, views.plugin(index, plugin))
        return _NOT_FOUND

    async def proxy_cache(self, call: Call) -> AdminResponse:
        """The `proxy-cache` plugin's endpoints (its `api` module: inspect and purge cached responses)."""
        from forecourt.plugins.proxy_cache import api

        plugins = api.cache_plugins(call.config, call.active.plan, call.views)
        return await api.handle(call.request.method, call.args, plugins, workers=self.workers)


def available_plugins(registry: PluginRegistry) -> dict[str, JSON]:
    """Plugins this node can run, as Kong's `available_on_server`: name → version and priority."""
    available: dict[str, JSON] = {}
    for name in registry:
        cls = registry.plugin_class(name)
        if cls is not None:
            version = getattr(cls, "version", None)
            available[name] = {
                "version": version if isinstance(version, str) else __version__,
                "priority": cls.priority,
            }
    return available


def _match(pattern: tuple[str, ...], segments: list[str]) -> list[str] | None:
    if len(pattern) != len(segments):
        return None
    args = []
    for want, got in zip(pattern, segments, strict=True):
        if want == "*":
            args.append(got)
        elif want != got:
            return None
    return args


def _tagged(item: JSON, tags: str) -> bool:
    have = set(item.get("tags") or ())
    if "/" in tags:
        return any(tag in have for tag in tags.split("/"))
    return all(tag in have for tag in tags.split(","))


def _page(request: AdminRequest, items: list[JSON], extra: JSON | None = None) -> AdminResponse:
    """Kong's list shape: `{"data": [...], "next": ...}`, with `size`, `offset` and `tags`."""
    query = request.query
    tags = query.get("tags")
    if tags:
        items = [item for item in items if _tagged(item, tags)]
    try:
        size = int(query.get("size", _DEFAULT_PAGE))
        offset = int(query.get("offset", "0") or 0)
    except ValueError:
        return AdminResponse.message(400, "size and offset must be numbers")
    if not 1 <= size <= _MAX_PAGE or offset < 0:
        return AdminResponse.message(400, f"size must be between 1 and {_MAX_PAGE}, offset >= 0")
    page = items[offset : offset + size]
    body: JSON = dict(extra or {})
    body["data"] = page
    body["next"] = None
    if offset + size < len(items):
        following = str(offset + size)
        params = f"offset={following}&size={size}" + (f"&tags={tags}" if tags else "")
        body["next"] = f"{request.path}?{params}"
        body["offset"] = following
    return AdminResponse.json(200, body)
