"""An upstream's `healthchecks` record, with Kong 3.x's defaults.

Zero counters and intervals mean "disabled", exactly as in Kong: an upstream without a
`healthchecks` block gets the full default record and no checks run.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict

from forecourt.config.fields import Bool, HeaderName, HttpStatus, Sni, Str, UpstreamPath

Seconds = Annotated[float, Strict(), Field(ge=0, le=65535)]
Counter = Annotated[int, Strict(), Field(ge=0, le=255)]
Concurrency = Annotated[int, Strict(), Field(ge=1, le=2**31)]
HttpStatuses = tuple[HttpStatus, ...]


def _reject_grpc_check(value: object) -> object:
    if value in ("grpc", "grpcs"):
        raise ValueError(f'health check type "{value}" is not supported (use http, https or tcp)')
    return value


CheckType = Annotated[Literal["http", "https", "tcp"], BeforeValidator(_reject_grpc_check)]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ActiveHealthy(_Record):
    """When active probes mark a target healthy again."""

    interval: Seconds = Field(0, description="Seconds between probes of healthy targets; 0 disables.")
    http_statuses: HttpStatuses = (200, 302)
    successes: Counter = Field(0, description="Successful probes needed to mark a target healthy.")


class ActiveUnhealthy(_Record):
    """When active probes mark a target unhealthy."""

    interval: Seconds = Field(0, description="Seconds between probes of unhealthy targets; 0 disables.")
    http_statuses: HttpStatuses = (429, 404, 500, 501, 502, 503, 504, 505)
    tcp_failures: Counter = 0
    timeouts: Counter = 0
    http_failures: Counter = 0


class ActiveHealthcheck(_Record):
    """Periodic probes sent to every target."""

    type: CheckType = "http"
    timeout: Seconds = Field(1, description="Probe timeout in seconds.")
    concurrency: Concurrency = Field(10, description="Targets probed at the same time.")
    http_path: UpstreamPath = "/"
    https_sni: Sni | None = None
    https_verify_certificate: Bool = True
    headers: dict[HeaderName, tuple[Str, ...]] | None = None
    healthy: ActiveHealthy = Field(default_factory=ActiveHealthy)
    unhealthy: ActiveUnhealthy = Field(default_factory=ActiveUnhealthy)


class PassiveHealthy(_Record):
    """Which proxied responses count as successes."""

    http_statuses: HttpStatuses = (
        200, 201, 202, 203, 204, 205, 206, 207, 208, 226,
        300, 301, 302, 303, 304, 305, 306, 307, 308,
    )  # fmt: skip
    successes: Counter = 0


class PassiveUnhealthy(_Record):
    """Which proxied outcomes count as failures (the circuit breaker of Kong's docs)."""

    http_statuses: HttpStatuses = (429, 500, 503)
    tcp_failures: Counter = 0
    timeouts: Counter = 0
    http_failures: Counter = 0


class PassiveHealthcheck(_Record):
    """Health inferred from proxied traffic."""

    type: CheckType = "http"
    healthy: PassiveHealthy = Field(default_factory=PassiveHealthy)
    unhealthy: PassiveUnhealthy = Field(default_factory=PassiveUnhealthy)


class Healthchecks(_Record):
    """Active and passive health checking of an upstream's targets."""

    active: ActiveHealthcheck = Field(default_factory=ActiveHealthcheck)
    passive: PassiveHealthcheck = Field(default_factory=PassiveHealthcheck)
    threshold: Annotated[float, Strict(), Field(ge=0, le=100)] = Field(
        0, description="Percentage of healthy target weight below which the upstream counts as unhealthy."
    )
