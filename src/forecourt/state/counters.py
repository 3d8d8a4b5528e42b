"""The seam between rate limiting and where its counters live.

A `CounterStore` answers one question atomically: "may `amount` more hits be counted for `key` in
each of these windows without any window going over its limit — and if so, count them". Checking
and counting in one step is what makes a store exact under concurrency: two requests can never both
see the last free slot. A refused take counts nothing, as Kong counts only the requests it lets
through.

Stores may answer synchronously (the node-local shared table does, so the plugin's access phase
stays task-free) or with an awaitable (Redis); callers test `isinstance(result, Usage)`.

Exceptions (all raised by `take` or the awaitable it returns):

    StoreError            the store could not answer
    └── StoreUnavailable  it cannot be reached right now (connection refused, timeout); retrying
                          later may work, nothing was counted (as far as the store knows)
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol


class StoreError(Exception):
    """A counter store failed to answer."""


class StoreUnavailable(StoreError):
    """The counter store cannot be reached (down, refusing connections or timing out)."""


@dataclass(frozen=True, slots=True)
class Window:
    """One fixed window of one period for one take: `[start, end)` in epoch seconds.

    `limit` is the most hits the window may count (an integer: Kong's fractional limits are
    rounded up, which is what its `remaining <= 0` test amounts to). `period` names the window in
    keys (`second`, `minute`, ...).
    """

    period: str
    start: int
    end: int
    limit: int


class Usage(NamedTuple):
    """The outcome of a take: whether it was counted and each window's count afterwards.

    `counts[i]` belongs to `windows[i]` of the take; when `allowed` is False nothing was counted
    and the counts are the current ones. (A named tuple: one is made per request.)
    """

    allowed: bool
    counts: tuple[int, ...]


class CounterStore(Protocol):
    """Where fixed-window counters live (see the module docstring)."""

    def take(self, key: str, windows: Sequence[Window], amount: int = 1) -> Usage | Awaitable[Usage]:
        """Count `amount` hits for `key` in every window if no window would exceed its limit."""
        ...

    async def close(self) -> None:
        """Release connections (the store may be shared; closing is idempotent)."""
        ...
