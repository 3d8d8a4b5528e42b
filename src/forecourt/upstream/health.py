"""Health checks of an upstream's targets, with Kong's `healthchecks` semantics.

A :class:`HealthChecker` watches one upstream's balancer. Its verdict is ``Endpoint.healthy``, which
every balancer already honours: an unhealthy endpoint is never picked, and when none is left
``pick()`` returns None and the proxy answers 503 at once.

Counters, per address, as in Kong (lua-resty-healthcheck). Each outcome, whether from an active probe
or a proxied request (passive), updates them:

- a status listed as healthy: ``successes`` + 1, every failure counter cleared;
- a refused or reset connection: ``tcp_failures`` + 1; a timeout: ``timeouts`` + 1; a status listed
  as unhealthy: ``http_failures`` + 1; each of these clears ``successes``;
- a status in neither list changes nothing.

A healthy address turns unhealthy when a failure counter reaches its threshold
(``unhealthy.tcp_failures`` / ``timeouts`` / ``http_failures`` of the check that saw the outcome); an
unhealthy one turns healthy when ``successes`` reaches ``healthy.successes``. A threshold of 0 never
trips. Counters restart at every change of state.

Active checks probe healthy addresses every ``active.healthy.interval`` seconds and unhealthy ones
every ``active.unhealthy.interval`` (0: not probed in that state), ``active.concurrency`` at a time,
each probe bounded by ``active.timeout``: an HTTP(S) ``GET active.http_path`` (status line read,
connection closed) or a TCP connect.

Recovery without active checks (Forecourt's choice): Kong leaves an address that passive checks took
out of rotation unhealthy until someone re-enables it through the Admin API. Forecourt has no writable
Admin API in DB-less mode, so it does what Envoy's outlier detection does: when no active probe can
bring the address back (``active.unhealthy.interval`` or ``active.healthy.successes`` is 0), it returns
to rotation after a cool-down of ``cooldown`` seconds times the number of times it was ejected in a
row (at most ``cooldown_max``); an address that stayed healthy for ``cooldown_max`` starts that count
again. If it still fails, passive checks take it out again, for longer.

State lives on the checker (counters, last change, reason) and on the endpoint (``healthy``), keyed
by address, so it survives ``set_endpoints`` (DNS refreshes, discovery) and reloads that keep the
upstream unchanged (the plan builder reuses the checker). Health is per worker process, as Kong's
is per node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from forecourt.upstream.endpoint import Endpoint, format_hostport

if TYPE_CHECKING:
    from forecourt.config.healthchecks import ActiveHealthcheck, Healthchecks
    from forecourt.upstream.balancers import Balancer

__all__ = [
    "EndpointHealth",
    "HealthChecker",
    "HttpProbe",
    "Outcome",
    "Probe",
    "checks_enabled",
]

log = logging.getLogger("forecourt.upstream.health")

PASSIVE_COOLDOWN = 10.0
PASSIVE_COOLDOWN_MAX = 300.0


class Outcome(Enum):
    """What one probe or one proxied request said about an address."""

    SUCCESS = "success"
    HTTP_FAILURE = "http_failure"
    TCP_FAILURE = "tcp_failure"
    TIMEOUT = "timeout"


# A probe answers with the HTTP status it got, or an Outcome (TCP checks, failures).
Probe = Callable[[Endpoint], Awaitable["int | Outcome"]]


def checks_enabled(checks: Healthchecks) -> bool:
    """Kong's rule: active checks run when an interval is set, passive ones when a counter is."""
    return _active_enabled(checks) or _passive_enabled(checks)


def _active_enabled(checks: Healthchecks) -> bool:
    return checks.active.healthy.interval > 0 or checks.active.unhealthy.interval > 0


def _passive_enabled(checks: Healthchecks) -> bool:
    passive = checks.passive
    return (
        passive.healthy.successes > 0
        or passive.unhealthy.tcp_failures > 0
        or passive.unhealthy.timeouts > 0
        or passive.unhealthy.http_failures > 0
    )


def _counted(count: int, what: str) -> str:
    return f"{count} {what}" if count == 1 else f"{count} {what}s"


@dataclass(frozen=True, slots=True)
class _Thresholds:
    successes: int
    http_failures: int
    tcp_failures: int
    timeouts: int


class EndpointHealth:
    """The checker's record of one address: its counters and its last change of state."""

    __slots__ = (
        "changed_at",
        "ejections",
        "endpoint",
        "healthy_since",
        "http_failures",
        "reason",
        "returns_at",
        "successes",
        "tcp_failures",
        "timeouts",
        "timer",
    )

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.successes = 0
        self.http_failures = 0
        self.tcp_failures = 0
        self.timeouts = 0
        self.changed_at: float | None = None  # Unix time of the last change of state
        self.reason = ""
        self.ejections = 0
        self.healthy_since = 0.0
        self.returns_at = 0.0  # monotonic time a passive cool-down ends (0: none pending)
        self.timer: asyncio.TimerHandle | None = None

    def clear(self) -> None:
        self.successes = self.http_failures = self.tcp_failures = self.timeouts = 0

    def as_dict(self, now: float) -> dict[str, object]:
        """The admin API's view: reason, since, counters (and the cool-down left, if any)."""
        data: dict[str, object] = {
            "reason": self.reason or None,
            "since": None if self.changed_at is None else round(self.changed_at, 3),
            "counters": {
                "successes": self.successes,
                "http_failures": self.http_failures,
                "tcp_failures": self.tcp_failures,
                "timeouts": self.timeouts,
            },
        }
        if self.returns_at and not self.endpoint.healthy:
            data["returns_in"] = round(max(0.0, self.returns_at - now), 3)
        return data


class HealthChecker:
    """Active probes and passive outcomes for one upstream's balancer.

    ``start()`` (inside the running loop) starts the probe tasks, ``close()`` stops them. The proxy
    calls ``report_status`` / ``report`` for proxied traffic; both return at once when passive checks
    are off. ``unavailable`` is True while the healthy share of the weight is below
    ``healthchecks.threshold`` percent (Kong then answers 503 for the whole upstream).
    """

    def __init__(
        self,
        name: str,
        checks: Healthchecks,
        balancer: Balancer,
        *,
        host_header: str | None = None,
        probe: Probe | None = None,
        cooldown: float = PASSIVE_COOLDOWN,
        cooldown_max: float = PASSIVE_COOLDOWN_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.checks = checks
        self.balancer = balancer
        self.cooldown = cooldown
        self.cooldown_max = max(cooldown, cooldown_max)
        self.clock = clock
        active = checks.active
        passive = checks.passive
        self.passive = _passive_enabled(checks)
        self.healthy_interval = active.healthy.interval
        self.unhealthy_interval = active.unhealthy.interval
        self.concurrency = active.concurrency
        self._active = _Thresholds(
            active.healthy.successes,
            active.unhealthy.http_failures,
            active.unhealthy.tcp_failures,
            active.unhealthy.timeouts,
        )
        self._passive = _Thresholds(
            passive.healthy.successes,
            passive.unhealthy.http_failures,
            passive.unhealthy.tcp_failures,
            passive.unhealthy.timeouts,
        )
        # Only a probe of unhealthy addresses that can count successes brings one back.
        self.active_recovers = self.unhealthy_interval > 0 and self._active.successes > 0
        self._active_ok = frozenset(active.healthy.http_statuses)
        self._active_bad = frozenset(active.unhealthy.http_statuses)
        self._passive_ok = frozenset(passive.healthy.http_statuses)
        self._passive_bad = frozenset(passive.unhealthy.http_statuses)
        self.threshold = checks.threshold
        self.unavailable = False
        self.probe: Probe = probe if probe is not None else HttpProbe(active, host_header)
        self._records: dict[str, EndpointHealth] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Adopt the endpoints' current health and start probing. Idempotent; needs a running loop."""
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        for ep in self.balancer.endpoints:
            if not ep.healthy:
                record = self._record(ep)
                record.reason = record.reason or "unhealthy when checks started"
                if not self.active_recovers and not record.returns_at:
                    self._schedule_return(record)
        self._update_availability()
        label = self.name or "?"
        if self.healthy_interval > 0:
            self._tasks.append(
                self._loop.create_task(
                    self._probe_loop(True, self.healthy_interval), name=f"forecourt-health:{label}:healthy"
                )
            )
        if self.unhealthy_interval > 0:
            self._tasks.append(
                self._loop.create_task(
                    self._probe_loop(False, self.unhealthy_interval),
                    name=f"forecourt-health:{label}:unhealthy",
                )
            )

    def stop(self) -> None:
        """Stop probing and cancel pending cool-downs at once. Endpoint health is left as it is."""
        self._closed = True
        for record in self._records.values():
            if record.timer is not None:
                record.timer.cancel()
                record.timer = None
        for task in self._tasks:
            task.cancel()

    async def close(self) -> None:
        """`stop()`, then wait for the probe tasks to end."""
        self.stop()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if tasks:
            # A probe cancelled mid-connect closes its transport on the next loop iteration: let
            # that happen before a caller closes the loop.
            await asyncio.sleep(0)
            await asyncio.sleep(0)

    # ------------------------------------------------------------------ reporting
    def report_status(self, endpoint: Endpoint, status: int) -> None:
        """A proxied response's status (passive check)."""
        if not self.passive:
            return
        if status in self._passive_ok:
            if endpoint.key in self._records:  # nothing to clear or count otherwise
                self.report(endpoint, Outcome.SUCCESS)
        elif status in self._passive_bad:
            self.report(endpoint, Outcome.HTTP_FAILURE)

    def report(self, endpoint: Endpoint, outcome: Outcome, *, active: bool = False) -> None:
        """Count one outcome for `endpoint`; `active` says a probe (not proxied traffic) saw it."""
        if not active and not self.passive:
            return
        record = self._record(endpoint)
        limits = self._active if active else self._passive
        source = "active" if active else "passive"
        if outcome is Outcome.SUCCESS:
            record.successes += 1
            record.http_failures = record.tcp_failures = record.timeouts = 0
            if not endpoint.healthy and limits.successes and record.successes >= limits.successes:
                what = _counted(record.successes, "successful probe" if active else "successful response")
                self._mark(record, True, f"{what} ({source})")
            return
        record.successes = 0
        if outcome is Outcome.TCP_FAILURE:
            record.tcp_failures += 1
            count, limit, what = record.tcp_failures, limits.tcp_failures, "TCP failure"
        elif outcome is Outcome.TIMEOUT:
            record.timeouts += 1
            count, limit, what = record.timeouts, limits.timeouts, "timeout"
        else:
            record.http_failures += 1
            count, limit, what = record.http_failures, limits.http_failures, "HTTP failure"
        if endpoint.healthy and limit and count >= limit:
            self._mark(record, False, f"{_counted(count, what)} ({source})")

    def report_probe(self, endpoint: Endpoint, result: int | Outcome) -> None:
        """An active probe's result: a status (classified by the active lists) or an Outcome."""
        if isinstance(result, Outcome):
            self.report(endpoint, result, active=True)
        elif result in self._active_ok:
            self.report(endpoint, Outcome.SUCCESS, active=True)
        elif result in self._active_bad:
            self.report(endpoint, Outcome.HTTP_FAILURE, active=True)

    # ------------------------------------------------------------------ probing
    async def probe_round(self, healthy: bool) -> None:
        """Probe every address currently in the `healthy` state, `concurrency` at a time."""
        self._prune()
        targets = [ep for ep in self.balancer.endpoints if ep.healthy is healthy and ep.weight > 0]
        if targets:
            limit = asyncio.Semaphore(self.concurrency)

            async def one(ep: Endpoint) -> None:
                async with limit:
                    result = await self.probe(ep)
                if not self._closed:
                    self.report_probe(ep, result)

            await asyncio.gather(*(one(ep) for ep in targets))
        self._update_availability()

    async def _probe_loop(self, healthy: bool, interval: float) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due += interval
            await asyncio.sleep(max(0.0, due - loop.time()))
            try:
                await self.probe_round(healthy)
            except Exception:
                log.exception("upstream %s: health check round failed", self.name)
            due = max(due, loop.time())  # a slow round: skip the missed ticks rather than burst

    # ------------------------------------------------------------------ state
    def health_of(self, endpoint: Endpoint) -> EndpointHealth:
        """The record of `endpoint` (a blank one when nothing happened to it yet)."""
        record = self._records.get(endpoint.key)
        if record is None or record.endpoint is not endpoint:
            return EndpointHealth(endpoint)
        return record

    def details(self, endpoint: Endpoint) -> dict[str, object]:
        """`endpoint`'s reason, since and counters, as the admin API shows them."""
        return self.health_of(endpoint).as_dict(self.clock())

    def endpoints(self) -> Sequence[Endpoint]:
        return self.balancer.endpoints

    def _record(self, endpoint: Endpoint) -> EndpointHealth:
        record = self._records.get(endpoint.key)
        if record is None or record.endpoint is not endpoint:
            if record is not None and record.timer is not None:
                record.timer.cancel()
            record = EndpointHealth(endpoint)
            self._records[endpoint.key] = record
        return record

    def _mark(self, record: EndpointHealth, healthy: bool, reason: str) -> None:
        endpoint = record.endpoint
        endpoint.healthy = healthy
        record.changed_at = time.time()
        record.reason = reason
        record.clear()
        if record.timer is not None:
            record.timer.cancel()
            record.timer = None
        record.returns_at = 0.0
        if healthy:
            record.healthy_since = self.clock()
            log.info("upstream %s: %s is healthy again: %s", self.name, endpoint.label, reason)
        else:
            log.warning("upstream %s: %s is unhealthy: %s", self.name, endpoint.label, reason)
            if not self.active_recovers:
                self._schedule_return(record)
        self._update_availability()

    def _schedule_return(self, record: EndpointHealth) -> None:
        """Passive-only recovery: back into rotation after a growing cool-down."""
        loop = self._loop
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
        now = self.clock()
        if record.healthy_since and now - record.healthy_since >= self.cooldown_max:
            record.ejections = 0
        record.ejections += 1
        delay = min(self.cooldown * record.ejections, self.cooldown_max)
        record.returns_at = now + delay
        record.timer = loop.call_later(delay, self._cooldown_over, record)

    def _cooldown_over(self, record: EndpointHealth) -> None:
        record.timer = None
        if self._closed or record.endpoint.healthy or self._records.get(record.endpoint.key) is not record:
            return
        self._mark(record, True, f"cool-down over (ejection {record.ejections})")

    def _prune(self) -> None:
        """Forget records of addresses that left the balancer."""
        current = {ep.key for ep in self.balancer.endpoints}
        for key in [k for k in self._records if k not in current]:
            record = self._records.pop(key)
            if record.timer is not None:
                record.timer.cancel()

    def _update_availability(self) -> None:
        if not self.threshold:
            return
        endpoints = self.balancer.endpoints
        total = sum(ep.weight for ep in endpoints)
        available = sum(ep.weight for ep in endpoints if ep.healthy)
        self.unavailable = total > 0 and available * 100 < self.threshold * total

    def __repr__(self) -> str:
        unhealthy = sum(1 for ep in self.balancer.endpoints if not ep.healthy)
        return f"<HealthChecker {self.name or '?'} {unhealthy} unhealthy>"


class HttpProbe:
    """The default probe: `GET http_path` over HTTP(S), or a TCP connect, per `active.type`."""

    def __init__(self, check: ActiveHealthcheck, host_header: str | None = None) -> None:
        self.type = check.type
        self.timeout = check.timeout or None
        self.path = check.http_path
        self.sni = check.https_sni
        self.host_header = host_header
        self.ssl_context: ssl.SSLContext | None = None
        if check.type == "https":
            context = ssl.create_default_context()
            if not check.https_verify_certificate:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self.ssl_context = context
        extra = b"".join(
            name.encode("latin-1") + b": " + value.encode("latin-1") + b"\r\n"
            for name, values in (check.headers or {}).items()
            for value in values
        )
        self._extra = extra
        self._has_host = any(name.lower() == "host" for name in (check.headers or {}))

    def request_for(self, endpoint: Endpoint) -> bytes:
        head = b"GET " + self.path.encode("latin-1") + b" HTTP/1.1\r\n"
        if not self._has_host:
            host = self.host_header or endpoint.host
            if endpoint.port != (443 if self.type == "https" else 80):
                host = format_hostport(host, endpoint.port)
            elif ":" in host:
                host = f"[{host}]"
            head += b"Host: " + host.encode("idna") + b"\r\n"
        return head + b"User-Agent: forecourt-healthcheck\r\nConnection: close\r\n" + self._extra + b"\r\n"

    async def __call__(self, endpoint: Endpoint) -> int | Outcome:
        loop = asyncio.get_running_loop()
        made: list[_ProbeProtocol] = []  # the protocol outlives a cancellation, so it is always closed

        def protocol() -> _ProbeProtocol:
            made.append(_ProbeProtocol(loop))
            return made[-1]

        server_hostname = None
        if self.ssl_context is not None:
            server_hostname = self.sni or self.host_header or endpoint.host
        try:
            async with asyncio.timeout(self.timeout):
                await loop.create_connection(
                    protocol,
                    endpoint.ip,
                    endpoint.port,
                    ssl=self.ssl_context,
                    server_hostname=server_hostname,
                )
                if self.type == "tcp":
                    return Outcome.SUCCESS
                made[0].send(self.request_for(endpoint))
                line = await made[0].status_line
        except TimeoutError:
            return Outcome.TIMEOUT
        except (OSError, ssl.SSLError, ssl.CertificateError, UnicodeError):
            return Outcome.TCP_FAILURE
        finally:
            for probe in made:
                probe.close()
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            return Outcome.TCP_FAILURE  # not an HTTP answer: as bad as no answer
        return int(parts[1])


class _ProbeProtocol(asyncio.Protocol):
    """One probe connection: send the request, resolve `status_line` with the first line back."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.status_line: asyncio.Future[bytes] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.status_line.done() and (b"\n" in self.buffer or len(self.buffer) > 8192):
            self.status_line.set_result(self.buffer.split(b"\n", 1)[0])

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.status_line.done():
            self.status_line.set_exception(exc or ConnectionResetError("closed before a status line"))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if not self.status_line.done():
            self.status_line.cancel()
