"""A service's `circuit_breaker` record (Forecourt extension): one breaker per target of the service.

```yaml
services:
- name: orders
  host: orders-pool
  circuit_breaker:
    failures: 5            # consecutive failures that open a target's breaker (0: rule off)
    failure_ratio: 0.5     # or this share of failures within `window` seconds (0: rule off) ...
    window: 10
    min_requests: 10       # ... once at least this many requests were seen in the window
    open_seconds: 30       # how long an open breaker refuses before letting trial requests through
    half_open_requests: 1  # trial requests while half-open; that many successes close it again
    http_statuses: [500, 502, 503, 504]   # upstream statuses that count as failures
```

Refused connections, resets and timeouts always count as failures. A request whose target's breaker
is open goes to another target; when every target's breaker is open the gateway answers 503 at once,
with `Retry-After`. The runtime side is `forecourt.upstream.CircuitBreaker`; field names match the
aggregate backends' `circuit_breaker` (`failures`, `open_seconds`, `half_open_requests`).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator

from forecourt.config.fields import Bool, HttpStatus

__all__ = ["CircuitBreakerConfig"]

Seconds = Annotated[float, Strict(), Field(gt=0, le=86400)]
Count = Annotated[int, Strict(), Field(ge=0, le=1_000_000)]


class CircuitBreakerConfig(BaseModel):
    """When a service target's breaker opens, and how it closes again."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: Bool = Field(True, description="false: keep the record but run no breaker.")
    failures: Count = Field(
        5, description="Consecutive failures that open the breaker; 0 turns the rule off."
    )
    failure_ratio: Annotated[float, Strict(), Field(ge=0, le=1)] = Field(
        0.5, description="Share of failed requests within `window` that opens the breaker; 0 turns it off."
    )
    window: Seconds = Field(10, description="Seconds of traffic `failure_ratio` looks at.")
    min_requests: Count = Field(10, description="Requests needed within `window` before the ratio counts.")
    open_seconds: Seconds = Field(30, description="Seconds an open breaker refuses requests (Retry-After).")
    half_open_requests: Annotated[int, Strict(), Field(ge=1, le=10_000)] = Field(
        1, description="Trial requests let through while half-open; all must succeed to close it."
    )
    http_statuses: tuple[HttpStatus, ...] = Field(
        (500, 502, 503, 504), description="Upstream response statuses counted as failures."
    )

    @model_validator(mode="after")
    def _some_rule(self) -> CircuitBreakerConfig:
        if self.failures == 0 and self.failure_ratio == 0:
            raise ValueError("set failures or failure_ratio above 0: with neither the breaker never opens")
        return self
