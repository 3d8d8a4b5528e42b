"""A demo instance's registration with the registry, through Eureka's REST API.

What a Eureka client library (Spring Cloud's, py-eureka-client) does for a service, in a few
requests: register (`POST /apps/{APP}`), renew the lease every `renew` seconds (`PUT
/apps/{APP}/{id}`, registering again when the registry forgot the instance), and deregister
(`DELETE`) on the way out, so the gateways stop sending traffic at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from forecourt.demo.client import fetch

__all__ = ["Registration"]

log = logging.getLogger("forecourt.demo")

_DATA_CENTER = {"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn"}


class Registration:
    """One instance (`app` at `host:port`) in the registry at `registry` (…/eureka)."""

    def __init__(self, registry: str, app: str, host: str, port: int, *, renew: int = 30) -> None:
        self.registry = registry.rstrip("/")
        self.app = app.upper()
        self.host = host
        self.port = port
        self.renew = renew
        self.instance_id = f"{app.lower()}-{host}:{port}"
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"{self.registry}/apps/{self.app}"

    def document(self) -> dict[str, object]:
        """The instance as Eureka's JSON (`{"instance": {...}}`)."""
        base = f"http://{self.host}:{self.port}"
        return {
            "instance": {
                "instanceId": self.instance_id,
                "app": self.app,
                "hostName": self.host,
                "ipAddr": self.host,
                "status": "UP",
                "port": {"$": self.port, "@enabled": "true"},
                "securePort": {"$": 443, "@enabled": "false"},
                "vipAddress": self.app.lower(),
                "dataCenterInfo": _DATA_CENTER,
                "leaseInfo": {"renewalIntervalInSecs": self.renew, "durationInSecs": 3 * self.renew},
                "homePageUrl": f"{base}/",
                "healthCheckUrl": f"{base}/health",
                "metadata": {"owner": "forecourt-demo"},
            }
        }

    async def register(self) -> None:
        """Register now (raises OSError when the registry refuses or cannot be reached)."""
        answer = await fetch("POST", self.url, json=self.document())
        if answer.status != 204:
            raise OSError(f"registry answered {answer.status} to the registration of {self.instance_id}")
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._renew_forever())

    async def deregister(self) -> None:
        """Stop renewing and leave the registry (quietly: the registry may be gone already)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(OSError, TimeoutError):
            await fetch("DELETE", f"{self.url}/{self.instance_id}", timeout=1.0)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.renew)
            try:
                answer = await fetch("PUT", f"{self.url}/{self.instance_id}")
                if answer.status == 404:  # the registry restarted without our lease: register again
                    await fetch("POST", self.url, json=self.document())
            except (OSError, TimeoutError) as exc:
                log.warning("cannot renew %s: %s", self.instance_id, exc)
