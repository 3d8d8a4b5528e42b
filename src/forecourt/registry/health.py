"""Active health checks of registered instances (optional: `--health-check-interval`).

A lease only notices a dead instance after its duration (90 s by default). When checks are on, the
registry also probes each instance's `healthCheckUrl` (its `statusPageUrl` when it has none; an
instance with neither is not probed) every interval, and acts on two consecutive verdicts of the
same kind:

* unreachable (the connection is refused, or not established within the timeout): the instance is
  dead, so it is evicted at once, exactly as an expired lease would be. A live client that was
  wrongly evicted gets 404 on its next heartbeat and registers again.
* reachable but failing (a status of 400 or more, like Spring Boot's 503 for DOWN, or no answer
  within the timeout): the instance is alive but not fit to serve; it is shown as DOWN until a probe
  succeeds again, then it is restored.

HTTPS probes do not verify the instance's certificate: they decide liveness, carry no data, and an
instance's certificate is issued for names the registry may not use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from enum import Enum
from urllib.parse import urlsplit

from forecourt import __version__
from forecourt.registry.model import Registration
from forecourt.registry.store import RegistryStore

__all__ = ["HealthChecker", "ProbeResult", "probe"]

log = logging.getLogger("forecourt.registry")

THRESHOLD = 2
"""Consecutive verdicts of one kind before the checker acts on them."""
MAX_CONCURRENT_PROBES = 64


class ProbeResult(Enum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    UNREACHABLE = "unreachable"


def _insecure_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def probe(url: str, timeout: float) -> ProbeResult:
    """GET `url` once and classify the outcome."""
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if secure else 80)
    except ValueError:
        return ProbeResult.UNREACHABLE
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=_insecure_context() if secure else None), timeout
        )
    except (OSError, TimeoutError, ssl.SSLError):
        return ProbeResult.UNREACHABLE
    try:
        host_header = parts.netloc.rpartition("@")[2]
        head = (
            f"GET {target} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: forecourt-registry/{__version__}"
            "\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode("latin-1"))
        line = await asyncio.wait_for(reader.readline(), timeout)
    except (OSError, TimeoutError, UnicodeEncodeError):
        return ProbeResult.UNHEALTHY
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 1.0)
    parts_of_line = line.split(b" ", 2)
    if len(parts_of_line) < 2 or not parts_of_line[0].startswith(b"HTTP/") or not parts_of_line[1].isdigit():
        return ProbeResult.UNHEALTHY
    return ProbeResult.HEALTHY if int(parts_of_line[1]) < 400 else ProbeResult.UNHEALTHY


def probe_url(reg: Registration) -> str:
    info = reg.info
    if info.secure_health_check_url and info.secure_port_enabled and not info.port_enabled:
        return info.secure_health_check_url
    return info.health_check_url or info.status_page_url


Prober = Callable[[str, float], Awaitable[ProbeResult]]


class HealthChecker:
    """Probes every instance each `interval`; `on_change()` is awaited after the store changed."""

    def __init__(
        self,
        store: RegistryStore,
        *,
        interval: float,
        timeout: float,
        on_change: Callable[[], Awaitable[None]],
        prober: Prober = probe,
    ) -> None:
        self.store = store
        self.interval = interval
        self.timeout = timeout
        self.on_change = on_change
        self.prober = prober
        self._streaks: dict[tuple[str, str], tuple[ProbeResult, int]] = {}
        self._limit = asyncio.Semaphore(MAX_CONCURRENT_PROBES)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check_once()
            except Exception:
                log.exception("registry health check round failed")

    async def check_once(self) -> None:
        regs = [(reg, probe_url(reg)) for reg in self.store.registrations()]
        regs = [(reg, url) for reg, url in regs if url]
        results = await asyncio.gather(*(self._probe(url) for _, url in regs))
        live = {reg.key for reg, _ in regs}
        self._streaks = {key: value for key, value in self._streaks.items() if key in live}
        changed = False
        for (reg, url), result in zip(regs, results, strict=True):
            if self.store.get(*reg.key) is not reg:
                continue  # deregistered or replaced while the probe ran
            previous, count = self._streaks.get(reg.key, (result, 0))
            count = count + 1 if previous is result else 1
            self._streaks[reg.key] = (result, count)
            app, instance_id = reg.key
            if result is ProbeResult.HEALTHY:
                if self.store.set_health(app, instance_id, down=False):
                    log.info("instance %s/%s is healthy again (%s)", app, instance_id, url)
                    changed = True
            elif count >= THRESHOLD and result is ProbeResult.UNREACHABLE:
                reg.evicted_ms = int(time.time() * 1000)
                self.store.cancel(app, instance_id)
                self._streaks.pop(reg.key, None)
                log.warning("evicted %s/%s: %s unreachable %d times in a row", app, instance_id, url, count)
                changed = True
            elif count >= THRESHOLD and self.store.set_health(app, instance_id, down=True):
                log.warning(
                    "instance %s/%s is DOWN: %s failed %d times in a row", app, instance_id, url, count
                )
                changed = True
        if changed:
            await self.on_change()

    async def _probe(self, url: str) -> ProbeResult:
        async with self._limit:
            return await self.prober(url, self.timeout)
