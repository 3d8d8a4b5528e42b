"""RetryBudget and RetryPolicy: Envoy's budget (20% of active, min 3) and full-jitter backoff."""

from __future__ import annotations

import asyncio

import pytest

from forecourt.upstream import RetryBudget, RetryPolicy


@pytest.mark.parametrize(
    ("active", "limit"),
    [(0, 3), (1, 3), (15, 3), (20, 4), (100, 20), (1000, 200)],
)
def test_limit_is_twenty_percent_of_active_with_a_floor_of_three(active: int, limit: int) -> None:
    assert RetryBudget().limit(active) == limit


def test_tokens_run_out_and_come_back() -> None:
    budget = RetryBudget(RetryPolicy(min_retry_concurrency=2))
    assert budget.try_acquire(active=0)
    assert budget.try_acquire(active=0)
    assert not budget.try_acquire(active=0)
    budget.release()
    assert budget.try_acquire(active=0)
    assert budget.in_flight == 2


@pytest.mark.parametrize("retry", [1, 2, 3, 4, 5, 10])
def test_backoff_is_full_jitter_under_an_exponential_cap(retry: int) -> None:
    policy = RetryPolicy(backoff_base=0.025, backoff_cap=0.25)
    ceiling = min(0.25, 0.025 * 2 ** (retry - 1))
    assert policy.backoff(retry, rand=lambda: 0.0) == 0.0
    assert policy.backoff(retry, rand=lambda: 0.999999) == pytest.approx(ceiling, rel=1e-4)
    assert 0 <= policy.backoff(retry) <= ceiling


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="backoff"):
        RetryPolicy(backoff_base=1.0, backoff_cap=0.5)


def test_a_waiter_gets_the_next_released_token_in_order() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        budget = RetryBudget(RetryPolicy(min_retry_concurrency=1, budget_wait=5))
        assert budget.try_acquire(0)
        order: list[str] = []
        budget.wait(loop, lambda: order.append("first"), lambda: order.append("first expired"))
        second = budget.wait(loop, lambda: order.append("second"), lambda: order.append("second expired"))
        assert not budget.try_acquire(0)  # nobody jumps the queue
        budget.release()
        assert order == ["first"]
        assert budget.in_flight == 1  # the token changed hands
        second.cancel()  # its request went away
        budget.release()
        assert order == ["first"]
        assert budget.in_flight == 0

    asyncio.run(scenario())


def test_a_waiter_expires_after_budget_wait() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        budget = RetryBudget(RetryPolicy(min_retry_concurrency=1, budget_wait=0.05))
        assert budget.try_acquire(0)
        expired = asyncio.Event()
        budget.wait(loop, lambda: None, expired.set)
        async with asyncio.timeout(2):
            await expired.wait()
        assert budget.denied == 1
        budget.release()
        assert budget.in_flight == 0
        assert budget.as_dict() == {"in_flight": 0, "waiting": 0, "granted": 1, "denied": 1}

    asyncio.run(scenario())
