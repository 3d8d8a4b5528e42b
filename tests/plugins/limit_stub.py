"""A test-only rate limiter: `X-Test-Limit: 1` is rejected with 429 and marked as a rate-limit rejection.

It marks its answers as the `rate-limiting` plugin does (`ctx.shared["rate_limited"] = True`), so the
`prometheus` plugin's `forecourt_rate_limited_total` can be tested without real rate limits.
Loaded by dotted path: `tests.plugins.limit_stub:LimitStub`.
"""

from __future__ import annotations

from forecourt.pipeline import Context, Plugin, PluginConfig, Response


class LimitStubConfig(PluginConfig):
    pass


class LimitStub(Plugin[LimitStubConfig]):
    name = "limit-stub"
    priority = 910  # Kong's rate-limiting
    Config = LimitStubConfig

    def access(self, ctx: Context) -> Response | None:
        if ctx.header(b"x-test-limit") is None:
            return None
        ctx.shared["rate_limited"] = True
        return Response.error(429, "API rate limit exceeded", [(b"Retry-After", b"1")])
