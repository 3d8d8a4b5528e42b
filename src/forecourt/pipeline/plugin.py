"""The plugin interface (ARCHITECTURE.md §6), shared by bundled and custom plugins.

A plugin is a handler class plus a declarative pydantic `Config`. Phases, in the order a request
meets them (each plugin list runs by descending `priority`, as in Kong, for every phase):

* `access(ctx)` — before proxying. Return None to continue, a `Response` to answer now, or an
  awaitable of either when the plugin must wait (a Redis call, a JWKS fetch). Returning a plain
  value keeps the request free of any task: one is created only when some plugin actually waits.
* `response(ctx, head)` — the response's status and headers, before anything is sent; synchronous,
  like Kong's header_filter.
* `body(ctx, chunk, last)` — a streaming body filter returning the bytes to send (possibly b""
  while it buffers); synchronous, like Kong's body_filter. `last` is True once, at the end.
* `log(ctx)` — after the response was sent.

Only the phases a plugin overrides are called: the chain lists each phase's plugins once, when
the config is loaded. Instances hold only their immutable config; per-request state goes on `ctx`.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from forecourt.pipeline.consumers import ConsumerIndex
    from forecourt.pipeline.context import Context, ResponseHead
    from forecourt.pipeline.response import Response


class PluginConfig(BaseModel):
    """Base for plugin config schemas: unknown fields are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


ConfigT = TypeVar("ConfigT", bound=BaseModel)
AccessResult = "Response | None | Awaitable[Response | None]"


@dataclass(slots=True)
class PluginEnv:
    """What a plugin may need from its surroundings when it is built (once per config load)."""

    gateway: str = ""
    consumers: ConsumerIndex | None = None
    redis_url: str | None = None
    state_dir: Path | None = None
    trusted_ips: tuple[str, ...] = ()
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PluginScope:
    """Where a plugin instance is attached (names; None = any)."""

    route: str | None = None
    service: str | None = None
    consumer: str | None = None


class Plugin(Generic[ConfigT]):
    """Base class of every plugin."""

    name: ClassVar[str]
    priority: ClassVar[int]
    Config: ClassVar[type[BaseModel]]

    def __init__(self, config: ConfigT, scope: PluginScope, env: PluginEnv) -> None:
        self.config = config
        self.scope = scope
        self.env = env

    def access(self, ctx: Context) -> Response | Awaitable[Response | None] | None:
        return None

    def response(self, ctx: Context, head: ResponseHead) -> None:
        return None

    def body(self, ctx: Context, chunk: bytes, last: bool) -> bytes:
        return chunk

    def log(self, ctx: Context) -> None:
        return None

    async def start(self) -> None:
        """Called once the plan is about to serve (open clients, start background tasks)."""

    async def close(self) -> None:
        """Called when the plan is retired."""

    @classmethod
    def overrides(cls, phase: str) -> bool:
        """Whether this class implements `phase` (the chain skips phases it does not)."""
        return getattr(cls, phase) is not getattr(Plugin, phase)
