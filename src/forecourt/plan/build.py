"""Config snapshot → runtime plan.

Compilation that can fail (route regexes, certificates) reports through `GatewayConfig.issue`, so
every error points at `file:line: key.path` like the loader's own, and `forecourt check` catches
them too. Target sets are shared across reloads while their definition is unchanged, so balancer
state (round-robin position, in-flight counts, resolved addresses) survives a reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Coroutine, Hashable
from dataclasses import replace
from pathlib import Path
from typing import Any

from forecourt.config import ConfigError, ConfigIssue, GatewayConfig, Route, Service, Upstream
from forecourt.http.tls import (
    CertificateSpec,
    TLSConfigError,
    build_client_context,
    build_server_context,
    check_snis,
    validate_certificate,
)
from forecourt.pipeline import (
    Consumer,
    ConsumerIndex,
    Credential,
    Plugin,
    PluginEnv,
    PluginRegistry,
    PluginScope,
    PluginSet,
)
from forecourt.plan.model import Plan, RoutePlan, ServicePlan, TargetSource
from forecourt.plan.resilience import ResilienceState
from forecourt.proxy.aggregate_plan import compile_aggregate
from forecourt.proxy.hashing import HashKeyFn, make_hash_key
from forecourt.routing import InvalidRoutePattern, Router, RouteSpec, compile_kong_regex, make_upstream_path
from forecourt.upstream import Resolver, UpstreamTargets

log = logging.getLogger(__name__)

_DEFAULT_PORTS = {"http": 80, "https": 443}
_READY_TIMEOUT = 5.0


def host_header_value(host: str, port: int, protocol: str) -> bytes:
    """`Host` for an upstream request: the port is left out when it is the scheme's default."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    if _DEFAULT_PORTS.get(protocol) == port:
        return host.encode("idna")
    return f"{host}:{port}".encode("idna")


class PlanBuilder:
    """Builds plans for one process; owns the target sets (and their DNS refresh) behind them."""

    def __init__(
        self,
        dns_resolver: str | None = None,
        registry: PluginRegistry | None = None,
        env: PluginEnv | None = None,
    ) -> None:
        self.nameservers = [dns_resolver] if dns_resolver else None
        self.resolver = Resolver(self.nameservers)
        self.registry = registry if registry is not None else PluginRegistry()
        self.env = env if env is not None else PluginEnv()
        self._targets: dict[Hashable, TargetSource] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self.resilience = ResilienceState()

    # ------------------------------------------------------------------ building
    def validate(self, config: GatewayConfig) -> None:
        """Raise `ConfigError` for anything that would stop `build`, without keeping state."""
        self._compile(config, keep=False)

    def build(self, config: GatewayConfig) -> Plan:
        return self._compile(config, keep=True)

    def _compile(self, config: GatewayConfig, *, keep: bool) -> Plan:
        issues: list[ConfigIssue] = []
        upstream_sources: dict[str, TargetSource] = {}
        for upstream in config.upstreams:
            targets = tuple((t.host, t.port, t.weight) for t in upstream.targets)
            if upstream.discovery is not None:
                upstream_sources[upstream.name] = self._discovered_set(upstream, targets, keep)
                continue
            key = ("upstream", upstream.name, upstream.algorithm, upstream.slots, targets)
            upstream_sources[upstream.name] = self._target_set(
                key, targets, upstream.algorithm, upstream.slots, upstream.name, keep
            )
        health = self.resilience.health_checkers(config.upstreams, upstream_sources, keep)
        services: dict[str, ServicePlan] = {}
        for service in config.services:
            compiled = self._service(config, service, upstream_sources, keep, issues)
            services[service.name] = self.resilience.equip(compiled, service, health, keep)
        routes: dict[str, RoutePlan] = {}
        specs: list[RouteSpec] = []
        for order, route in enumerate(config.routes):
            self._check_paths(config, route, issues)
            service_plan = services.get(route.service) if route.service else None
            aggregate = None
            if route.aggregate is not None and service_plan is None:
                service_configs = {service.name: service for service in config.services}
                aggregate = compile_aggregate(route.name, route.aggregate, services, service_configs)
                service_plan = aggregate.service
            if service_plan is None:
                issues.append(config.issue(route.source_path, "a route needs a service or an aggregate"))
                continue
            spec = RouteSpec(
                name=route.name,
                paths=tuple(route.paths),
                hosts=tuple(route.hosts),
                methods=tuple(route.methods),
                headers={name.lower(): tuple(values) for name, values in route.headers.items()},
                snis=tuple(route.snis),
                protocols=tuple(route.protocols),
                regex_priority=route.regex_priority,
                strip_path=route.strip_path,
                preserve_host=route.preserve_host,
                path_handling=route.path_handling,
                order=order,
            )
            plan_route = RoutePlan(
                name=route.name,
                service=service_plan,
                spec=spec,
                strip_path=route.strip_path,
                preserve_host=route.preserve_host,
                request_buffering=route.request_buffering or aggregate is not None,
                response_buffering=route.response_buffering,
                path_handling=route.path_handling,
                protocols=tuple(route.protocols),
                upstream_path=make_upstream_path(service_plan.path, route.strip_path, route.path_handling),
                https_redirect_status_code=route.https_redirect_status_code,
                aggregate=aggregate,
            )
            object.__setattr__(spec, "payload", plan_route)
            routes[route.name] = plan_route
            specs.append(spec)
        server_ssl = self._server_tls(config, issues)
        consumers = self._consumers(config)
        plugins = self._plugins(config, consumers, issues)
        plugin_set = PluginSet(plugins)
        for route_plan in routes.values():
            service_name = (
                route_plan.service.name
                if route_plan.service is not None and route_plan.aggregate is None
                else None
            )
            route_plan.chain = plugin_set.chain(route_plan.name, service_name)
        if issues:
            raise ConfigError(issues)
        try:
            router = Router(specs)
        except InvalidRoutePattern as exc:  # pragma: no cover - paths were checked one by one above
            raise ConfigError([config.issue((), str(exc))]) from exc
        return Plan(
            router=router,
            routes=routes,
            services=services,
            listen=list(config.listen),
            config=config,
            upstreams=dict(upstream_sources),
            server_ssl=server_ssl,
            plugins=plugins,
            consumers=consumers,
            health=health,
        )

    def _consumers(self, config: GatewayConfig) -> ConsumerIndex:
        """Consumers with their ACL groups, and their credentials indexed by kind and key.

        Ids the file leaves out are the admin API's stable derived ones, so `X-Consumer-ID` and
        `X-Credential-Identifier` name the same entities as `/consumers` does. A key-auth `ttl`
        counts from this load.
        """
        from forecourt.admin.views import entity_id

        gateway = Path(config.source.file).stem
        loaded_at = time.time()
        index = ConsumerIndex()
        for consumer in config.consumers:
            runtime = Consumer(
                id=entity_id(gateway, "consumers", consumer.name, consumer.id),
                username=consumer.username,
                custom_id=consumer.custom_id,
                groups=tuple(acl.group for acl in consumer.acls),
            )
            index.add(runtime)
            for position, keyauth in enumerate(consumer.keyauth_credentials):
                credential_id = entity_id(
                    gateway, "keyauth_credentials", f"{consumer.name}/{position}", keyauth.id
                )
                expires_at = loaded_at + keyauth.ttl if keyauth.ttl else None
                index.add_credential(
                    Credential("key-auth", credential_id, runtime, keyauth.key, {"expires_at": expires_at})
                )
            for secret in consumer.jwt_secrets:
                data = {
                    "algorithms": secret.algorithms,
                    "secret": secret.secret,
                    "rsa_public_key": secret.rsa_public_key,
                    "jwks_uri": secret.jwks_uri,
                }
                credential_id = entity_id(gateway, "jwt_secrets", secret.key, secret.id)
                index.add_credential(Credential("jwt", credential_id, runtime, secret.key, data))
        return index

    def _plugins(
        self, config: GatewayConfig, consumers: ConsumerIndex, issues: list[ConfigIssue]
    ) -> list[Plugin[Any]]:
        """One instance per enabled plugin entry; a plugin may reject its config when built."""
        env = replace(self.env, consumers=consumers, gateway=Path(config.source.file).stem)
        plugins: list[Plugin[Any]] = []
        for entry in config.plugins:
            if not entry.enabled:
                continue
            cls = self.registry.plugin_class(entry.name)
            if cls is None:  # pragma: no cover - the loader already refused unknown names
                issues.append(config.issue((*entry.source_path, "name"), f'unknown plugin "{entry.name}"'))
                continue
            scope = PluginScope(route=entry.route, service=entry.service, consumer=entry.consumer)
            try:
                plugins.append(cls(entry.config, scope, env))
            except ValueError as exc:
                issues.append(config.issue((*entry.source_path, "config"), str(exc)))
        return plugins

    def _check_paths(self, config: GatewayConfig, route: Route, issues: list[ConfigIssue]) -> None:
        for index, path in enumerate(route.paths):
            if path.startswith("~"):
                try:
                    compile_kong_regex(path)
                except InvalidRoutePattern as exc:
                    issues.append(config.issue((*route.source_path, "paths", index), str(exc)))

    def _service(
        self,
        config: GatewayConfig,
        service: Service,
        upstreams: dict[str, TargetSource],
        keep: bool,
        issues: list[ConfigIssue],
    ) -> ServicePlan:
        upstream_name = service.host if service.host in upstreams else None
        hash_key: HashKeyFn | None = None
        if upstream_name is not None:
            source = upstreams[upstream_name]
            upstream = next(u for u in config.upstreams if u.name == upstream_name)
            hash_key = make_hash_key(upstream)
            host_header = (
                host_header_value(upstream.host_header, service.port, service.protocol)
                if (upstream.host_header)
                else b""
            )
        else:
            targets = ((service.host, service.port, 100),)
            source = self._target_set(("service", targets), targets, "round-robin", 10000, service.name, keep)
            host_header = host_header_value(service.host, service.port, service.protocol)
        ssl_context = None
        if service.protocol == "https":
            ca_pems = [
                ca.cert
                for ca in config.ca_certificates
                if service.ca_certificates and ca.id in service.ca_certificates
            ]
            try:
                ssl_context = build_client_context(verify=bool(service.tls_verify), ca_pems=ca_pems)
            except TLSConfigError as exc:
                issues.append(config.issue((*service.source_path, "ca_certificates"), str(exc)))
        return ServicePlan(
            name=service.name,
            protocol=service.protocol,
            host=service.host,
            port=service.port,
            path=service.path,
            retries=service.retries,
            connect_timeout=service.connect_timeout / 1000,
            read_timeout=service.read_timeout / 1000,
            write_timeout=service.write_timeout / 1000,
            targets=source,
            upstream_name=upstream_name,
            fixed_host_header=host_header,
            ssl_context=ssl_context,
            server_hostname=service.host if upstream_name is None else None,
            hash_key=hash_key,
        )

    def _target_set(
        self,
        key: Hashable,
        targets: tuple[tuple[str, int, int], ...],
        algorithm: str,
        slots: int,
        name: str,
        keep: bool,
    ) -> TargetSource:
        existing = self._targets.get(key)
        if existing is not None:
            return existing
        source = UpstreamTargets(list(targets), algorithm, self.resolver, slots=slots, name=name)
        if keep:
            self._targets[key] = source
        return source

    def _discovered_set(
        self, upstream: Upstream, targets: tuple[tuple[str, int, int], ...], keep: bool
    ) -> TargetSource:
        """The upstream's targets from its `discovery` provider; kept across reloads while unchanged."""
        from forecourt.discovery import DiscoveredTargets, TargetSpec, make_provider

        assert upstream.discovery is not None
        key = ("discovery", upstream.name, upstream.algorithm, upstream.slots, upstream.discovery, targets)
        existing = self._targets.get(key)
        if existing is not None:
            return existing
        provider = make_provider(
            upstream.discovery,
            nameservers=self.nameservers,
            extra_targets=[TargetSpec(host, port, weight) for host, port, weight in targets],
        )
        source = DiscoveredTargets(
            provider, upstream.algorithm, self.resolver, slots=upstream.slots, name=upstream.name
        )
        if keep:
            self._targets[key] = source
        return source

    def _server_tls(self, config: GatewayConfig, issues: list[ConfigIssue]) -> ssl.SSLContext | None:
        if not config.certificates:
            if any(item.ssl for item in config.listen):
                issues.append(config.issue(("listen",), "an 'ssl' listener needs at least one certificate"))
            return None
        specs = []
        for index, cert in enumerate(config.certificates):
            spec = CertificateSpec(
                id=cert.id or f"certificates[{index}]",
                cert=cert.cert,
                key=cert.key,
                snis=tuple(cert.snis),
                cert_alt=cert.cert_alt,
                key_alt=cert.key_alt,
            )
            for message in validate_certificate(spec):
                field, _, text = message.partition(": ")
                issues.append(config.issue((*cert.source_path, field), text or message))
            specs.append(spec)
        for message in check_snis(specs):
            issues.append(config.issue(("certificates",), message))
        if issues:
            return None
        try:
            return build_server_context(specs)
        except TLSConfigError as exc:
            issues.append(config.issue(("certificates",), str(exc)))
            return None

    # ------------------------------------------------------------------ lifecycle
    async def prepare(self, plan: Plan) -> None:
        """Start name resolution for every target set of `plan` and wait briefly for a first answer."""
        sources = {id(s): s for s in plan.upstreams.values()}
        sources.update({id(s.targets): s.targets for s in plan.services.values()})
        for source in sources.values():
            source.start()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_READY_TIMEOUT):
                await asyncio.gather(*(s.ready() for s in sources.values()), return_exceptions=True)
        self.resilience.start(plan)
        for plugin in plan.plugins:
            await plugin.start()

    def retire(self, old: Plan, new: Plan) -> None:
        """Stop target sets the new plan no longer uses."""
        for plugin in old.plugins:
            self._spawn(plugin.close())
        in_use = {id(s) for s in new.upstreams.values()} | {id(s.targets) for s in new.services.values()}
        for key, source in list(self._targets.items()):
            if id(source) not in in_use:
                del self._targets[key]
                self._spawn(source.close())
        self.resilience.retire(new)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self, plan: Plan | None = None) -> None:
        if plan is not None:
            await asyncio.gather(*(p.close() for p in plan.plugins), return_exceptions=True)
        await self.resilience.close()
        await asyncio.gather(*(s.close() for s in self._targets.values()), return_exceptions=True)
        self._targets.clear()
