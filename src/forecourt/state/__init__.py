"""Shared state stores: fixed-window counters for rate limiting (ARCHITECTURE.md §2).

Two stores behind the `CounterStore` protocol:

* `SharedCounterTable` (policy `local`): a memory-mapped hash table in the run's state directory,
  exact across the worker processes of one node, answering synchronously in a few microseconds.
* `RedisCounters` (policy `redis`): one atomic Lua script per batch of takes, exact across nodes.
"""

from forecourt.state.counters import CounterStore, StoreError, StoreUnavailable, Usage, Window
from forecourt.state.redis_counters import RedisCounters, RedisSettings
from forecourt.state.shared_table import SharedCounterTable

__all__ = [
    "CounterStore",
    "RedisCounters",
    "RedisSettings",
    "SharedCounterTable",
    "StoreError",
    "StoreUnavailable",
    "Usage",
    "Window",
]
