"""Retries that cannot turn a failing upstream into an overloaded one.

Two pieces, both Envoy's design:

- :class:`RetryBudget`, one per upstream: retries in flight may not exceed ``budget_percent`` of the
  requests in flight (20%), with a floor of ``min_retry_concurrency`` (3) so that a quiet upstream
  can still retry. A request holds its retry token from its first retry until it finishes, so
  sequential retries of one request count once, as one outstanding retry does in Envoy.
  Envoy fails a retry over budget at once, and so does Forecourt, with one exception: a failover
  (the retry would go to a target not tried yet) may queue for a token for at most ``budget_wait``
  seconds (FIFO). When one instance dies under load, all the requests it was serving fail in the
  same instant; queueing briefly lets every one of them move to a healthy instance, while retries in
  flight still never exceed the budget. When no untried target is left (the whole upstream fails)
  nothing queues: the request fails at once, which is what keeps an outage from being amplified.
- :meth:`RetryPolicy.backoff`: exponential backoff with full jitter, ``uniform(0, min(cap,
  base * 2**n))`` for the n-th retry that goes back to a target already tried (a retry to a fresh
  target goes at once: a failover is not a second attempt at the same thing).

Both are plain objects driven by callbacks on the event loop: waiting costs a ``TimerHandle``,
never a task.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RetryBudget", "RetryPolicy", "RetryWaiter"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How retries are paced and bounded (the defaults are Envoy's budget and backoff)."""

    budget_percent: float = 20.0
    min_retry_concurrency: int = 3
    backoff_base: float = 0.025
    backoff_cap: float = 0.25
    budget_wait: float = 0.25

    def __post_init__(self) -> None:
        if self.budget_percent < 0 or self.min_retry_concurrency < 0:
            raise ValueError("budget_percent and min_retry_concurrency must be >= 0")
        if self.backoff_base < 0 or self.backoff_cap < self.backoff_base or self.budget_wait < 0:
            raise ValueError("need 0 <= backoff_base <= backoff_cap and budget_wait >= 0")

    def backoff(self, retry: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before back-off retry number `retry` (1, 2, ...): full jitter."""
        ceiling: float = min(self.backoff_cap, self.backoff_base * 2.0 ** max(0, retry - 1))
        return ceiling * rand()


class RetryWaiter:
    """A retry queued for a budget token; ``cancel()`` leaves the queue (the request went away)."""

    __slots__ = ("cancelled", "grant", "timer")

    def __init__(self, grant: Callable[[], None]) -> None:
        self.grant = grant
        self.cancelled = False
        self.timer: asyncio.TimerHandle | None = None

    def cancel(self) -> None:
        self.cancelled = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class RetryBudget:
    """Retry tokens of one upstream. ``active`` (requests in flight) is passed in by the caller,
    which already counts them (the balancer's per-endpoint ``active``), so requests that never
    retry cost the budget nothing."""

    __slots__ = ("_waiters", "denied", "granted", "in_flight", "policy")

    def __init__(self, policy: RetryPolicy | None = None) -> None:
        self.policy = policy or RetryPolicy()
        self.in_flight = 0
        self.granted = 0
        self.denied = 0
        self._waiters: deque[RetryWaiter] = deque()

    def limit(self, active: int) -> int:
        """Retries allowed in flight while `active` requests are."""
        return max(self.policy.min_retry_concurrency, int(active * self.policy.budget_percent / 100))

    def try_acquire(self, active: int) -> bool:
        """Take a token if one is free now (and nobody queues ahead)."""
        if self.in_flight < self.limit(active) and not self._live_waiters():
            self.in_flight += 1
            self.granted += 1
            return True
        return False

    def wait(
        self, loop: asyncio.AbstractEventLoop, grant: Callable[[], None], expire: Callable[[], None]
    ) -> RetryWaiter:
        """Queue for a token: `grant()` once one is handed over (the caller then owns it and must
        `release()` it), or `expire()` after `budget_wait` seconds without one."""
        waiter = RetryWaiter(grant)

        def timed_out() -> None:
            waiter.timer = None
            if not waiter.cancelled:
                waiter.cancelled = True
                self.denied += 1
                expire()

        waiter.timer = loop.call_later(self.policy.budget_wait, timed_out)
        self._waiters.append(waiter)
        return waiter

    def release(self) -> None:
        """Give a token back: straight to the oldest live waiter, if any."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if waiter.cancelled:
                continue
            waiter.cancel()  # stops its timer; the token changes hands, in_flight stays
            self.granted += 1
            waiter.grant()
            return
        if self.in_flight > 0:
            self.in_flight -= 1

    def _live_waiters(self) -> bool:
        waiters = self._waiters
        while waiters and waiters[0].cancelled:
            waiters.popleft()
        return bool(waiters)

    def as_dict(self) -> dict[str, int]:
        return {
            "in_flight": self.in_flight,
            "waiting": sum(1 for w in self._waiters if not w.cancelled),
            "granted": self.granted,
            "denied": self.denied,
        }

    def __repr__(self) -> str:
        return f"<RetryBudget in_flight={self.in_flight} waiting={len(self._waiters)}>"
