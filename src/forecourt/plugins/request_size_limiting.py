"""`request-size-limiting`: refuse request bodies above a size (Kong's plugin).

Kong answers 413 `{"message": "Request size limit exceeded"}` (417 when the client sent
`Expect: 100-continue`), judging by `Content-Length` when there is one, else by the body read.
With `require_content_length`, a request without `Content-Length` is refused with 411.

Where the check happens in Forecourt: on routes with `request_buffering` on (Kong's default) the
server has read the whole body, chunked or not, before the access phase, so both the declared
length and the received length are checked there. On routes with `request_buffering: false` the
access phase runs as soon as the head arrived: a declared `Content-Length` is still checked before
any byte goes upstream, but a chunked body streams through unchecked — stopping it mid-stream needs
a per-request body limit the server checks while it receives (see docs/plugins/offloading.md).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from forecourt.pipeline import Context, Plugin, PluginConfig, PluginEnv, PluginScope, Response

SizeUnit = Literal["bytes", "kilobytes", "megabytes"]
UNIT_BYTES: dict[str, int] = {"bytes": 1, "kilobytes": 1024, "megabytes": 1024 * 1024}
LIMIT_MESSAGE = "Request size limit exceeded"
LENGTH_REQUIRED_MESSAGE = "A valid Content-Length header is required"


class RequestSizeLimitingConfig(PluginConfig):
    allowed_payload_size: int = Field(128, ge=0, description="Largest allowed body, in size_unit.")
    size_unit: SizeUnit = Field(
        "megabytes", description="Unit of allowed_payload_size (1 kilobyte = 1024 bytes)."
    )
    require_content_length: bool = Field(False, description="Refuse requests without Content-Length (411).")


class RequestSizeLimitingPlugin(Plugin[RequestSizeLimitingConfig]):
    """Answers 413 (or 417 to `Expect: 100-continue`) when the body is larger than allowed."""

    name = "request-size-limiting"
    priority = 951
    Config = RequestSizeLimitingConfig

    def __init__(self, config: RequestSizeLimitingConfig, scope: PluginScope, env: PluginEnv) -> None:
        super().__init__(config, scope, env)
        self.limit = config.allowed_payload_size * UNIT_BYTES[config.size_unit]
        self._require_length = config.require_content_length

    def access(self, ctx: Context) -> Response | None:
        req = ctx.req
        length = req.content_length
        if length is None:
            if self._require_length:
                return Response.error(411, LENGTH_REQUIRED_MESSAGE)
            # Chunked (or no) body: judge what was received, which is all of it when buffered.
            length = req.body_bytes
        if length <= self.limit:
            return None
        if req.expect_continue or _expects_continue(ctx):
            return Response.error(417, LIMIT_MESSAGE)
        return Response.error(413, LIMIT_MESSAGE)


def _expects_continue(ctx: Context) -> bool:
    value = ctx.header(b"expect")
    return value is not None and value.strip().lower() == b"100-continue"
