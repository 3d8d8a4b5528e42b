"""Request coalescing: at most one upstream fetch per cache key at a time, in a worker process.

The first request that misses a key becomes the key's *leader* and goes upstream; identical
misses arriving meanwhile join its `Flight` and wait (their access phase returns an awaitable).
The leader releases the flight once its response is stored — or, earlier, once it knows it will
not be (not storable, too large, the upstream failed, the client left: the plugin's log phase
releases whatever is still held). Waiters then look the key up again: a hit answers them, a miss
sends each upstream on its own. A waiter also stops waiting after `coalesce_timeout`, so a slow or
stuck leader delays the others by at most that much. This is nginx's `proxy_cache_lock` behaviour.

Flights are per worker process: with `--workers N`, up to N requests for one key may go upstream
at once (one per worker).
"""

from __future__ import annotations

import asyncio

__all__ = ["Coalescer", "Flight"]


class Flight:
    """One leader's upstream fetch for `key`, which waiters can await."""

    __slots__ = ("_coalescer", "done", "key", "waiters")

    def __init__(self, coalescer: Coalescer, key: str, done: asyncio.Future[None]) -> None:
        self._coalescer = coalescer
        self.key = key
        self.done = done
        self.waiters = 0

    @property
    def released(self) -> bool:
        return self.done.done()

    def release(self) -> None:
        """The leader is finished with the key (stored or not): wake the waiters. Idempotent."""
        if not self.done.done():
            self.done.set_result(None)
        self._coalescer.forget(self)

    async def wait(self, timeout: float) -> bool:
        """Wait for the leader (at most `timeout` seconds); whether it finished in time."""
        self.waiters += 1
        try:
            await asyncio.wait_for(asyncio.shield(self.done), timeout)
        except TimeoutError:
            return False
        return True


class Coalescer:
    """The flights in progress of one cache store, by key."""

    __slots__ = ("_flights",)

    def __init__(self) -> None:
        self._flights: dict[str, Flight] = {}

    def join(self, key: str) -> tuple[Flight, bool]:
        """The flight for `key`, and whether the caller leads it (it did not exist)."""
        flight = self._flights.get(key)
        if flight is not None and not flight.released:
            return flight, False
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        flight = Flight(self, key, done)
        self._flights[key] = flight
        return flight, True

    def forget(self, flight: Flight) -> None:
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]

    def __len__(self) -> int:
        return len(self._flights)
