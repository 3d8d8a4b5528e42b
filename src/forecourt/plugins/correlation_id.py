"""`correlation-id`: give every request an id header (Kong's correlation-id plugin).

A request that already carries a non-empty `header_name` keeps it; otherwise one is generated and
added to the upstream request, and with `echo_downstream` the same value is set on the response.
The value is also left in `ctx.shared["correlation_id"]` for the access log and other plugins.

This plugin is on the hot path of every request it covers, so generation is cheap: `uuid#counter`
(Kong's default) is a per-worker UUID prefix plus a counter (~0.1 µs), and `uuid` formats 122
random bits as a version-4 UUID without going through the `uuid` module (~0.6 µs instead of
~2.5 µs). Random bits come from the `random` module's global generator, which Python reseeds in
every forked worker; the per-worker prefix is reset after a fork too, so workers never share ids.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import time
import uuid
from typing import Literal

from pydantic import Field, field_validator

from forecourt.pipeline import Context, Plugin, PluginConfig, PluginEnv, PluginScope, ResponseHead

SHARED_KEY = "correlation_id"
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

Generator = Literal["uuid", "uuid#counter", "tracker"]


class CorrelationIdConfig(PluginConfig):
    header_name: str = Field(
        "Kong-Request-ID", description="Request (and, with echo_downstream, response) header holding the id."
    )
    generator: Generator = Field(
        "uuid#counter",
        description="uuid: a random UUID per request; uuid#counter: a per-worker UUID and a counter; "
        "tracker: server address, port, worker pid, connection, request number and time.",
    )
    echo_downstream: bool = Field(False, description="Also send the id back to the client.")

    @field_validator("header_name")
    @classmethod
    def _valid_header(cls, value: str) -> str:
        if not _TOKEN.match(value):
            raise ValueError(f"'{value}' is not a valid header name")
        return value


# ---------------------------------------------------------------------- generators
class _WorkerIds:
    """The per-process part of `uuid#counter` ids; reset in each forked child."""

    prefix = ""
    counter: itertools.count[int] = itertools.count(1)
    requests: itertools.count[int] = itertools.count(1)

    @classmethod
    def reset(cls) -> None:
        cls.prefix = str(uuid.uuid4())
        cls.counter = itertools.count(1)
        cls.requests = itertools.count(1)


_WorkerIds.reset()
os.register_at_fork(after_in_child=_WorkerIds.reset)

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
    return f"{_WorkerIds.prefix}#{next(_WorkerIds.counter)}"


def tracker_text(ctx: Context) -> str:
    """Kong's `tracker`: `server_addr-server_port-pid-connection-request-time`.

    Forecourt has no nginx connection serial numbers: `connection` is an identifier of the client
    connection that is unique among the worker's open connections, and `request` is the worker's
    request sequence number rather than the count of requests on that connection.
    """
    addr, port = "", 0
    transport = ctx.client.transport
    if transport is not None:
        sock = transport.get_extra_info("sockname")
        if isinstance(sock, tuple) and len(sock) >= 2:
            addr, port = sock[0], sock[1]
    return (
        f"{addr}-{port}-{os.getpid()}-{id(ctx.client) & 0xFFFFFFFF}-"
        f"{next(_WorkerIds.requests)}-{time.time():.3f}"
    )


class CorrelationIdPlugin(Plugin[CorrelationIdConfig]):
    """Adds `header_name` to requests that lack it, optionally echoing it to the client."""

    name = "correlation-id"
    priority = 100001
    Config = CorrelationIdConfig

    def __new__(cls, config: CorrelationIdConfig, scope: PluginScope, env: PluginEnv) -> CorrelationIdPlugin:
        chosen = _EchoingCorrelationIdPlugin if cls is CorrelationIdPlugin and config.echo_downstream else cls
        return super().__new__(chosen)

    def __init__(self, config: CorrelationIdConfig, scope: PluginScope, env: PluginEnv) -> None:
        super().__init__(config, scope, env)
        self._header = config.header_name.encode("latin-1")
        self._lower = self._header.lower()
        self._length = len(self._header)
        generator = config.generator
        self._tracker = generator == "tracker"
        self._generate = uuid4_text if generator == "uuid" else uuid_counter_text

    def _new_id(self, ctx: Context) -> str:
        return tracker_text(ctx) if self._tracker else self._generate()

    def access(self, ctx: Context) -> None:
        lower, length = self._lower, self._length
        headers = ctx.req.headers
        for name, value in headers:
            if len(name) == length and name.lower() == lower:
                if value:
                    ctx.shared[SHARED_KEY] = value.decode("latin-1")
                    return None
                # Present but empty: Kong generates one and replaces the header.
                generated = self._new_id(ctx)
                ctx.shared[SHARED_KEY] = generated
                ctx.set_header(name, generated.encode())
                return None
        generated = self._generate() if not self._tracker else tracker_text(ctx)
        ctx.shared[SHARED_KEY] = generated
        headers.append((self._header, generated.encode()))
        return None


class _EchoingCorrelationIdPlugin(CorrelationIdPlugin):
    """The same plugin with `echo_downstream` on: only then is there a response phase to run.

    The chain lists a phase by whether the class overrides it, so an instance without echo must
    not have a class that does: a response phase costs every proxied response a head copy.
    """

    def response(self, ctx: Context, head: ResponseHead) -> None:
        value = ctx.shared.get(SHARED_KEY)
        if not value:
            found = ctx.header(self._header)
            value = found.decode("latin-1") if found else self._new_id(ctx)
        head.set(self._header, value.encode("latin-1"))
