"""An example custom plugin: stamps requests and responses, and can refuse a header.

Use it by dotted path as the plugin `name` (the module must be importable, e.g. via PYTHONPATH):

    plugins:
    - name: request_stamp:RequestStamp
      config:
        header: X-Stamp
        value: hello
        deny_header: X-Forbidden

or register it under a short name in your package's `forecourt.plugins` entry-point group:

    [project.entry-points."forecourt.plugins"]
    request-stamp = "request_stamp:RequestStamp"
"""

from __future__ import annotations

from forecourt.pipeline import Context, Plugin, PluginConfig, Response, ResponseHead


class RequestStampConfig(PluginConfig):
    header: str = "X-Stamp"
    value: str = "stamped"
    deny_header: str | None = None


class RequestStamp(Plugin[RequestStampConfig]):
    """Adds `header: value` to the upstream request and to the response."""

    name = "request-stamp"
    priority = 800
    Config = RequestStampConfig

    def access(self, ctx: Context) -> Response | None:
        deny = self.config.deny_header
        if deny is not None and ctx.header(deny.encode()) is not None:
            return Response.error(403, f"{deny} is not allowed")
        ctx.set_header(self.config.header.encode(), self.config.value.encode())
        return None

    def response(self, ctx: Context, head: ResponseHead) -> None:
        head.set(self.config.header.encode(), self.config.value.encode())
