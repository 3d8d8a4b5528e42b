"""Circuit breakers: stop sending requests to a target that keeps failing, then let a few test it.

One :class:`CircuitBreaker` guards one backend (the proxy keeps one per service target; the
aggregation fan-out keeps one per backend). Its whole API::

    if not breaker.allow():              # False: answer 503 with Retry-After: breaker.retry_after()
        ...
    ...                                  # call the backend
    breaker.record(success)              # once per call that allow() admitted

States, as in Hystrix/resilience4j and Envoy's outlier detection:

- ``closed``: every call is admitted. The breaker opens after ``failures`` consecutive failures, or
  when at least ``min_requests`` calls were recorded within the last ``window`` seconds and the
  share of failures among them reaches ``failure_ratio``. Either rule is off when set to 0.
- ``open``: nothing is admitted for ``open_seconds`` seconds; then the breaker turns half-open.
- ``half_open``: up to ``half_open_requests`` trial calls are admitted at a time. That many
  successes close the breaker (with a clean window); one failure opens it again for ``open_seconds``.

A trial that never reports (its client went away) would hold its slot for ever; a slot is therefore
freed when its trial has been out for ``open_seconds`` seconds.

The failure window is a ring of ten buckets, so ``record`` is O(1) and a breaker is a few integers.
Breakers are single-threaded (one event loop) and take their clock as a parameter for tests.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from forecourt.upstream.endpoint import Endpoint

__all__ = ["BreakerPolicy", "BreakerState", "CircuitBreaker", "CircuitBreakers"]

_BUCKETS = 10


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a breaker opens and how it recovers (the service's ``circuit_breaker`` record).

    ``failure_statuses`` is for callers that classify HTTP responses (the proxy counts a response
    with one of these statuses as a failure, like a refused connection, a reset or a timeout).
    """

    failures: int = 5
    failure_ratio: float = 0.5
    window: float = 10.0
    min_requests: int = 10
    open_seconds: float = 30.0
    half_open_requests: int = 1
    failure_statuses: frozenset[int] = frozenset({500, 502, 503, 504})

    def __post_init__(self) -> None:
        if self.failures < 0 or self.min_requests < 0:
            raise ValueError("failures and min_requests must be >= 0")
        if not 0 <= self.failure_ratio <= 1:
            raise ValueError("failure_ratio must be between 0 and 1")
        if self.window <= 0 or self.open_seconds <= 0:
            raise ValueError("window and open_seconds must be > 0")
        if self.half_open_requests < 1:
            raise ValueError("half_open_requests must be >= 1")
        if self.failures == 0 and self.failure_ratio == 0:
            raise ValueError("set failures or failure_ratio (or both); with neither the breaker never opens")


class CircuitBreaker:
    """One backend's breaker. ``on_change(breaker, old_state)`` is called after each transition."""

    __slots__ = (
        "_bucket_failed",
        "_bucket_total",
        "_bucket_width",
        "_epoch",
        "_trial_started",
        "changed_at",
        "clock",
        "consecutive",
        "failed",
        "name",
        "on_change",
        "opened_until",
        "policy",
        "state",
        "total",
        "trial_successes",
        "trials",
    )

    def __init__(
        self,
        policy: BreakerPolicy,
        *,
        name: str = "",
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[CircuitBreaker, BreakerState], None] | None = None,
    ) -> None:
        self.policy = policy
        self.name = name
        self.clock = clock
        self.on_change = on_change
        self.state = BreakerState.CLOSED
        self.changed_at = time.time()
        self.consecutive = 0
        self.total = 0
        self.failed = 0
        self.opened_until = 0.0
        self.trials = 0
        self.trial_successes = 0
        self._trial_started = 0.0
        self._bucket_width = policy.window / _BUCKETS
        self._bucket_total = [0] * _BUCKETS
        self._bucket_failed = [0] * _BUCKETS
        self._epoch = 0

    # ------------------------------------------------------------------ the API
    def allow(self) -> bool:
        """May a call go to the backend now? A True in half-open takes a trial slot."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        now = self.clock()
        if state is BreakerState.OPEN:
            if now < self.opened_until:
                return False
            self._transition(BreakerState.HALF_OPEN)
        if self.trials and now - self._trial_started >= self.policy.open_seconds:
            self.trials = 0  # trials that never reported: free their slots
        if self.trials + self.trial_successes >= self.policy.half_open_requests:
            return False
        self.trials += 1
        self._trial_started = now
        return True

    def record(self, success: bool) -> None:
        """The outcome of one admitted call. Late outcomes of calls admitted before opening are ignored."""
        state = self.state
        if state is BreakerState.CLOSED:
            policy = self.policy
            if policy.failure_ratio:
                self._count(success)
            if success:
                self.consecutive = 0
                return
            self.consecutive += 1
            if (policy.failures and self.consecutive >= policy.failures) or (
                policy.failure_ratio
                and self.total >= policy.min_requests
                and self.failed >= policy.failure_ratio * self.total
            ):
                self._open()
        elif state is BreakerState.HALF_OPEN:
            if self.trials:
                self.trials -= 1
            if not success:
                self._open()
                return
            self.trial_successes += 1
            if self.trial_successes >= self.policy.half_open_requests:
                self._close()

    def retry_after(self) -> float:
        """Seconds until the breaker admits a call again (0 when it would now)."""
        if self.state is BreakerState.OPEN:
            return max(0.0, self.opened_until - self.clock())
        if self.state is BreakerState.HALF_OPEN and not self._has_trial_slot():
            return max(0.0, self._trial_started + self.policy.open_seconds - self.clock())
        return 0.0

    @property
    def is_open(self) -> bool:
        """True while calls are refused (open and not yet due for a trial); admits nothing by itself."""
        return self.state is BreakerState.OPEN and self.clock() < self.opened_until

    def as_dict(self) -> dict[str, object]:
        """The breaker as the admin API shows it."""
        self._advance(self.clock())
        retry_after = self.retry_after()
        return {
            "state": str(self.state),
            "since": round(self.changed_at, 3),
            "consecutive_failures": self.consecutive,
            "window": {"requests": self.total, "failures": self.failed},
            "retry_after": math.ceil(retry_after) if retry_after else 0,
        }

    # ------------------------------------------------------------------ internals
    def _has_trial_slot(self) -> bool:
        return self.trials + self.trial_successes < self.policy.half_open_requests

    def _count(self, success: bool) -> None:
        self._advance(self.clock())
        index = self._epoch % _BUCKETS
        self._bucket_total[index] += 1
        self.total += 1
        if not success:
            self._bucket_failed[index] += 1
            self.failed += 1

    def _advance(self, now: float) -> None:
        """Move the window to `now`, dropping buckets that fell out of it."""
        epoch = int(now / self._bucket_width)
        gone = epoch - self._epoch
        if gone <= 0:
            return
        if gone >= _BUCKETS:
            self._clear_window()
        else:
            for step in range(1, gone + 1):
                index = (self._epoch + step) % _BUCKETS
                self.total -= self._bucket_total[index]
                self.failed -= self._bucket_failed[index]
                self._bucket_total[index] = 0
                self._bucket_failed[index] = 0
        self._epoch = epoch

    def _clear_window(self) -> None:
        self._bucket_total = [0] * _BUCKETS
        self._bucket_failed = [0] * _BUCKETS
        self.total = 0
        self.failed = 0

    def _open(self) -> None:
        self.opened_until = self.clock() + self.policy.open_seconds
        self.trials = 0
        self.trial_successes = 0
        self._transition(BreakerState.OPEN)

    def _close(self) -> None:
        self.consecutive = 0
        self.trials = 0
        self.trial_successes = 0
        self._clear_window()
        self._transition(BreakerState.CLOSED)

    def _transition(self, state: BreakerState) -> None:
        old = self.state
        self.state = state
        self.changed_at = time.time()
        if state is BreakerState.HALF_OPEN:
            self.trials = 0
            self.trial_successes = 0
        if self.on_change is not None:
            self.on_change(self, old)

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name or '?'} {self.state}>"


class CircuitBreakers:
    """A service's breakers, one per target address (``Endpoint.key``), created on first use.

    Kept across reloads while the service's ``circuit_breaker`` record is unchanged, so an open
    breaker stays open through a reload. Entries of addresses that left are dropped by
    :meth:`prune`.
    """

    __slots__ = ("_by_key", "clock", "name", "on_change", "policy")

    def __init__(
        self,
        policy: BreakerPolicy,
        *,
        name: str = "",
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[CircuitBreaker, BreakerState], None] | None = None,
    ) -> None:
        self.policy = policy
        self.name = name
        self.clock = clock
        self.on_change = on_change
        self._by_key: dict[str, CircuitBreaker] = {}

    def get(self, endpoint: Endpoint) -> CircuitBreaker:
        breaker = self._by_key.get(endpoint.key)
        if breaker is None:
            breaker = CircuitBreaker(
                self.policy, name=f"{self.name}/{endpoint.key}", clock=self.clock, on_change=self.on_change
            )
            self._by_key[endpoint.key] = breaker
        return breaker

    def allow(self, endpoint: Endpoint) -> bool:
        breaker = self._by_key.get(endpoint.key)
        return True if breaker is None else breaker.allow()

    def record(self, endpoint: Endpoint, success: bool) -> None:
        breaker = self._by_key.get(endpoint.key)
        if breaker is None:
            if success:
                return  # a closed breaker with nothing to remember
            breaker = self.get(endpoint)
        breaker.record(success)

    def record_status(self, endpoint: Endpoint, status: int) -> None:
        self.record(endpoint, status not in self.policy.failure_statuses)

    def is_open(self, endpoint: Endpoint) -> bool:
        breaker = self._by_key.get(endpoint.key)
        return breaker is not None and breaker.is_open

    def retry_after(self, endpoints: Iterable[Endpoint]) -> float:
        """The shortest wait until one of `endpoints` admits a call."""
        waits = [self._by_key[ep.key].retry_after() for ep in endpoints if ep.key in self._by_key]
        return min(waits) if waits else 0.0

    def items(self) -> list[tuple[str, CircuitBreaker]]:
        """(address, breaker) for every address that has a breaker, sorted by address."""
        return sorted(self._by_key.items())

    def prune(self, keys: set[str]) -> None:
        """Forget the breakers of addresses not in `keys`."""
        for key in [k for k in self._by_key if k not in keys]:
            del self._by_key[key]

    def __repr__(self) -> str:
        return f"<CircuitBreakers {self.name or '?'} {len(self._by_key)} targets>"
