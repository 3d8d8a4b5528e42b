"""Health checkers, circuit breakers and retry budgets for a plan, kept across reloads.

The plan builder asks this module for the resilience state of each upstream and service. State is
reused while what it depends on is unchanged, so a reload does not forget that a target is
unhealthy or that a breaker is open:

- a health checker per upstream with checks on, keyed by the upstream's name, its `healthchecks`
  record and its target source (a new source means new endpoints anyway);
- a breaker set per service with an enabled `circuit_breaker`, keyed by service name and policy;
- a retry budget per target source (so services sharing an upstream share its budget).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from forecourt.upstream import BreakerPolicy, CircuitBreakers, HealthChecker, RetryBudget, checks_enabled

if TYPE_CHECKING:
    from forecourt.config import Service, Upstream
    from forecourt.plan.model import Plan, ServicePlan, TargetSource

__all__ = ["ResilienceState", "breaker_policy"]


def breaker_policy(service: Service) -> BreakerPolicy | None:
    """The runtime policy of a service's `circuit_breaker`, or None when it has none (or it is off)."""
    config = service.circuit_breaker
    if config is None or not config.enabled:
        return None
    return BreakerPolicy(
        failures=config.failures,
        failure_ratio=config.failure_ratio,
        window=config.window,
        min_requests=config.min_requests,
        open_seconds=config.open_seconds,
        half_open_requests=config.half_open_requests,
        failure_statuses=frozenset(config.http_statuses),
    )


class ResilienceState:
    """What the plan builder keeps between plans (one instance per builder)."""

    def __init__(self) -> None:
        self._checkers: dict[tuple[str, str], tuple[TargetSource, HealthChecker]] = {}
        self._breakers: dict[tuple[str, BreakerPolicy], CircuitBreakers] = {}
        self._budgets: dict[int, tuple[TargetSource, RetryBudget]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ building
    def health_checkers(
        self, upstreams: Sequence[Upstream], sources: Mapping[str, TargetSource], keep: bool
    ) -> dict[str, HealthChecker]:
        """A checker for every upstream whose `healthchecks` turn checks on."""
        checkers: dict[str, HealthChecker] = {}
        for upstream in upstreams:
            source = sources.get(upstream.name)
            if source is None or not checks_enabled(upstream.healthchecks):
                continue
            key = (upstream.name, upstream.healthchecks.model_dump_json() + (upstream.host_header or ""))
            found = self._checkers.get(key)
            if found is not None and found[0] is source:
                checkers[upstream.name] = found[1]
                continue
            checker = HealthChecker(
                upstream.name, upstream.healthchecks, source.balancer, host_header=upstream.host_header
            )
            if keep:
                self._checkers[key] = (source, checker)
            checkers[upstream.name] = checker
        return checkers

    def equip(
        self, plan: ServicePlan, service: Service, checkers: Mapping[str, HealthChecker], keep: bool
    ) -> ServicePlan:
        """Give a compiled service its health checker, breakers and retry budget."""
        if plan.upstream_name is not None:
            plan.health = checkers.get(plan.upstream_name)
        policy = breaker_policy(service)
        if policy is not None:
            key = (service.name, policy)
            breakers = self._breakers.get(key)
            if breakers is None:
                breakers = CircuitBreakers(policy, name=service.name)
                if keep:
                    self._breakers[key] = breakers
            plan.breakers = breakers
        found = self._budgets.get(id(plan.targets))
        if found is not None and found[0] is plan.targets:
            plan.retry_budget = found[1]
        elif keep:
            self._budgets[id(plan.targets)] = (plan.targets, plan.retry_budget)
        return plan

    # ------------------------------------------------------------------ lifecycle
    def start(self, plan: Plan) -> None:
        """Start the plan's checkers (after its target sources had their first resolution)."""
        for checker in plan.health.values():
            checker.start()

    def retire(self, new: Plan) -> None:
        """Drop what `new` no longer uses; stop its checkers at once (they must not flip health
        any more) and let addresses of upstreams that lost their checks be healthy again."""
        live_checkers = {id(c) for c in new.health.values()}
        for key, (_, checker) in list(self._checkers.items()):
            if id(checker) not in live_checkers:
                del self._checkers[key]
                checker.stop()
                self._spawn(checker.close())
        for name, source in new.upstreams.items():
            if name not in new.health:
                for ep in source.balancer.endpoints:
                    ep.healthy = True
        live_breakers = {id(s.breakers) for s in new.services.values() if s.breakers is not None}
        for breaker_key, breakers in list(self._breakers.items()):
            if id(breakers) not in live_breakers:
                del self._breakers[breaker_key]
        live_sources = {id(s.targets) for s in new.services.values()}
        for source_id in [k for k in self._budgets if k not in live_sources]:
            del self._budgets[source_id]
        for service in new.services.values():
            if service.breakers is not None:
                service.breakers.prune({ep.key for ep in service.targets.balancer.endpoints})

    async def close(self) -> None:
        checkers = [checker for _, checker in self._checkers.values()]
        self._checkers.clear()
        await asyncio.gather(*(c.close() for c in checkers), return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
