"""CircuitBreaker: closed → open → half-open → closed, on a fake clock."""

from __future__ import annotations

import pytest

from forecourt.config.circuit_breaker import CircuitBreakerConfig
from forecourt.upstream import BreakerPolicy, BreakerState, CircuitBreaker, CircuitBreakers, Endpoint


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def state_of(b: CircuitBreaker) -> BreakerState:
    return b.state  # a call, so that type checkers do not narrow `b.state` across calls


def breaker(clock: Clock, **policy: object) -> CircuitBreaker:
    return CircuitBreaker(BreakerPolicy(**policy), clock=clock)  # type: ignore[arg-type]


def test_consecutive_failures_open_and_success_resets_the_count() -> None:
    clock = Clock()
    b = breaker(clock, failures=3, failure_ratio=0)
    for _ in range(2):
        assert b.allow()
        b.record(False)
    b.record(True)  # the streak is broken
    for _ in range(2):
        b.record(False)
    assert state_of(b) is BreakerState.CLOSED
    b.record(False)
    assert state_of(b) is BreakerState.OPEN
    assert not b.allow()


def test_open_refuses_until_open_seconds_then_admits_one_trial() -> None:
    clock = Clock()
    b = breaker(clock, failures=1, failure_ratio=0, open_seconds=30, half_open_requests=1)
    b.record(False)
    assert b.retry_after() == pytest.approx(30)
    clock.now += 29.5
    assert not b.allow()
    assert b.is_open
    assert b.retry_after() == pytest.approx(0.5)
    clock.now += 0.5
    assert not b.is_open
    assert b.allow()  # the trial
    assert state_of(b) is BreakerState.HALF_OPEN
    assert not b.allow()  # only one trial at a time
    b.record(True)
    assert state_of(b) is BreakerState.CLOSED
    assert b.allow()


def test_failed_trial_opens_again_for_a_full_period() -> None:
    clock = Clock()
    b = breaker(clock, failures=1, failure_ratio=0, open_seconds=10)
    b.record(False)
    clock.now += 10
    assert b.allow()
    b.record(False)
    assert state_of(b) is BreakerState.OPEN
    assert b.retry_after() == pytest.approx(10)


def test_several_half_open_requests_must_all_succeed() -> None:
    clock = Clock()
    b = breaker(clock, failures=1, failure_ratio=0, open_seconds=1, half_open_requests=3)
    b.record(False)
    clock.now += 1
    assert [b.allow() for _ in range(4)] == [True, True, True, False]
    b.record(True)
    b.record(True)
    assert state_of(b) is BreakerState.HALF_OPEN
    assert not b.allow()  # two succeeded, one still out: no new slot
    b.record(True)
    assert state_of(b) is BreakerState.CLOSED


def test_a_trial_that_never_reports_frees_its_slot_after_open_seconds() -> None:
    clock = Clock()
    b = breaker(clock, failures=1, failure_ratio=0, open_seconds=5)
    b.record(False)
    clock.now += 5
    assert b.allow()
    clock.now += 4.9
    assert not b.allow()
    clock.now += 0.1
    assert b.allow()


def test_failure_ratio_within_the_window_needs_min_requests() -> None:
    clock = Clock()
    b = breaker(clock, failures=0, failure_ratio=0.5, window=10, min_requests=10)
    for i in range(9):
        b.record(i % 2 == 0)  # 5 successes, 4 failures
    assert state_of(b) is BreakerState.CLOSED
    b.record(False)  # 10 requests, 5 failures: 50%
    assert state_of(b) is BreakerState.OPEN


def test_failures_older_than_the_window_are_forgotten() -> None:
    clock = Clock()
    b = breaker(clock, failures=0, failure_ratio=0.5, window=10, min_requests=4)
    for _ in range(3):
        b.record(False)
    clock.now += 11  # those failures left the window
    for _ in range(3):
        b.record(True)
    b.record(False)
    assert state_of(b) is BreakerState.CLOSED
    assert (b.total, b.failed) == (4, 1)


def test_late_outcomes_while_open_are_ignored_and_on_change_sees_transitions() -> None:
    clock = Clock()
    seen: list[tuple[BreakerState, BreakerState]] = []
    b = CircuitBreaker(
        BreakerPolicy(failures=1, failure_ratio=0, open_seconds=1),
        clock=clock,
        on_change=lambda br, old: seen.append((old, br.state)),
    )
    b.record(False)
    b.record(True)  # a request admitted before the breaker opened
    assert state_of(b) is BreakerState.OPEN
    clock.now += 1
    b.allow()
    b.record(True)
    assert seen == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]


def test_breakers_per_target_are_independent() -> None:
    clock = Clock()
    breakers = CircuitBreakers(BreakerPolicy(failures=2, failure_ratio=0, open_seconds=5), clock=clock)
    a, b = Endpoint("a", "127.0.0.1", 1), Endpoint("b", "127.0.0.1", 2)
    breakers.record(a, True)  # a success creates nothing
    assert breakers.items() == []
    breakers.record_status(a, 503)
    breakers.record_status(a, 500)
    breakers.record_status(b, 404)  # not a failure status
    assert not breakers.allow(a)
    assert breakers.allow(b)
    assert breakers.is_open(a) and not breakers.is_open(b)
    assert breakers.retry_after([a, b]) == pytest.approx(5)
    breakers.prune({b.key})
    assert breakers.allow(a)


def test_policy_and_config_validation() -> None:
    with pytest.raises(ValueError, match="failures or failure_ratio"):
        BreakerPolicy(failures=0, failure_ratio=0)
    with pytest.raises(ValueError, match="failures or failure_ratio"):
        CircuitBreakerConfig(failures=0, failure_ratio=0)
    config = CircuitBreakerConfig()
    assert (config.failures, config.failure_ratio, config.open_seconds, config.half_open_requests) == (
        5,
        0.5,
        30,
        1,
    )
    assert config.http_statuses == (500, 502, 503, 504)


def test_as_dict_shows_state_and_retry_after() -> None:
    clock = Clock()
    b = breaker(clock, failures=1, failure_ratio=0.5, open_seconds=7)
    b.record(False)
    view = b.as_dict()
    assert view["state"] == "open"
    assert view["retry_after"] == 7
    assert view["window"] == {"requests": 1, "failures": 1}
