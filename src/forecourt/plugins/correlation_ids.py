"""The per-request part of `correlation-id`: making ids and finding or adding the id header.

Compiled with mypyc (see `forecourt._native`); the plugin class, its schema and the `tracker`
generator stay in `plugins.correlation_id`, interpreted (a compiled class cannot pick its subclass
in `__new__` as the plugin does, and pydantic models cannot be compiled).

`uuid#counter` (Kong's default) is a per-worker UUID prefix plus a counter, and `uuid` formats 122
random bits as a version-4 UUID without going through the `uuid` module. Random bits come from the
`random` module's global generator, which Python reseeds in every forked worker; the per-worker
prefix and counters are reset after a fork too, so workers never share ids.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Callable

from forecourt.pipeline.context import Context

SHARED_KEY = "correlation_id"
"""`ctx.shared` entry holding the request's id (for the access log and other plugins)."""


class WorkerIds:
    """This process's `uuid#counter` prefix and counter, and the `tracker` request number."""

    def __init__(self) -> None:
        self.prefix = ""
        self.counter = 0
        self.requests = 0
        self.reset()

    def reset(self) -> None:
        self.prefix = str(uuid.uuid4())
        self.counter = 0
        self.requests = 0


WORKER_IDS = WorkerIds()
os.register_at_fork(after_in_child=WORKER_IDS.reset)

_getrandbits = random.getrandbits
_UUID4_MASK = ((1 << 128) - 1) & ~(0xF000 << 64) & ~(0xC000 << 48)
# The version and variant bits, and bit 128 so that `hex()` always has 33 digits (no format spec:
# "032x" goes through the string formatter, ~30% of this function's cost).
_UUID4_BITS = (0x4000 << 64) | (0x8000 << 48) | (1 << 128)


def uuid4_text() -> str:
    """A random version-4 UUID in its usual text form (not for secrets: ids only)."""
    h = hex(_getrandbits(128) & _UUID4_MASK | _UUID4_BITS)  # "0x1" and 32 digits
    return f"{h[3:11]}-{h[11:15]}-{h[15:19]}-{h[19:23]}-{h[23:]}"


def uuid_counter_text() -> str:
    """Kong's `uuid#counter`: this worker's UUID, `#`, and a counter starting at 1."""
    ids = WORKER_IDS
    ids.counter += 1
    return ids.prefix + "#" + str(ids.counter)


def next_request_number() -> int:
    """The `tracker` generator's request number: this worker's request sequence, from 1."""
    ids = WORKER_IDS
    ids.requests += 1
    return ids.requests


def uuid_id(ctx: Context) -> str:
    return uuid4_text()


def uuid_counter_id(ctx: Context) -> str:
    return uuid_counter_text()


def correlate(ctx: Context, header: bytes, lower: bytes, generate: Callable[[Context], str]) -> None:
    """Keep the request's non-empty `header` or give it one; note the id in `ctx.shared`."""
    length = len(header)
    headers = ctx.req.headers
    for name, value in headers:
        if len(name) == length and name.lower() == lower:
            if value:
                ctx.shared[SHARED_KEY] = value.decode("latin-1")
                return
            # Present but empty: Kong generates one and replaces the header.
            generated = generate(ctx)
            ctx.shared[SHARED_KEY] = generated
            ctx.set_header(name, generated.encode())
            return
    generated = generate(ctx)
    ctx.shared[SHARED_KEY] = generated
    headers.append((header, generated.encode()))
