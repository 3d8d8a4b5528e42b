"""`correlation-id`: give every request an id header (Kong's correlation-id plugin).

A request that already carries a non-empty `header_name` keeps it; otherwise one is generated and
added to the upstream request, and with `echo_downstream` the same value is set on the response.
The value is also left in `ctx.shared["correlation_id"]` for the access log and other plugins.

This plugin is on the hot path of every request it covers: finding or adding the header and the
`uuid` and `uuid#counter` generators live in `plugins.correlation_ids`, which is compiled.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from typing import Literal

from pydantic import Field, field_validator

from forecourt.pipeline import Context, Plugin, PluginConfig, PluginEnv, PluginScope, ResponseHead
from forecourt.plugins.correlation_ids import (
    SHARED_KEY,
    correlate,
    next_request_number,
    uuid4_text,
    uuid_counter_id,
    uuid_counter_text,
    uuid_id,
)

__all__ = ["SHARED_KEY", "CorrelationIdConfig", "CorrelationIdPlugin", "uuid4_text", "uuid_counter_text"]

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
        f"{addr}-{port}-{os.getpid()}-{id(ctx.client) & 0xFFFFFFFF}-{next_request_number()}-{time.time():.3f}"
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
        generator = config.generator
        self._generate: Callable[[Context], str] = (
            tracker_text if generator == "tracker" else uuid_id if generator == "uuid" else uuid_counter_id
        )

    def access(self, ctx: Context) -> None:
        correlate(ctx, self._header, self._lower, self._generate)


class _EchoingCorrelationIdPlugin(CorrelationIdPlugin):
    """The same plugin with `echo_downstream` on: only then is there a response phase to run.

    The chain lists a phase by whether the class overrides it, so an instance without echo must
    not have a class that does: a response phase costs every proxied response a head copy.
    """

    def response(self, ctx: Context, head: ResponseHead) -> None:
        value = ctx.shared.get(SHARED_KEY)
        if not value:
            found = ctx.header(self._header)
            value = found.decode("latin-1") if found else self._generate(ctx)
        head.set(self._header, value.encode("latin-1"))
