"""A test-only authentication stand-in: `X-Test-Consumer: <id>` (and optional
`X-Test-Credential: <id>`) identify the request, as key-auth or jwt would.

Loaded by a gateway under test by dotted path (`tests.plugins.consumer_stub:ConsumerStub`), so
plugins that depend on `ctx.consumer`/`ctx.credential` can be tested without a real auth plugin.
"""

from __future__ import annotations

from forecourt.pipeline import Consumer, Context, Credential, Plugin, PluginConfig, Response


class ConsumerStubConfig(PluginConfig):
    pass


class ConsumerStub(Plugin[ConsumerStubConfig]):
    name = "consumer-stub"
    priority = 1250  # before rate-limiting (910), like Kong's auth plugins
    Config = ConsumerStubConfig

    def access(self, ctx: Context) -> Response | None:
        consumer_id = ctx.header(b"x-test-consumer")
        credential_id = ctx.header(b"x-test-credential")
        if consumer_id is None and credential_id is None:
            return None
        consumer = Consumer(id=(consumer_id or b"anonymous").decode(), username=None, custom_id=None)
        if credential_id is not None:
            ctx.credential = Credential(kind="stub", id=credential_id.decode(), consumer=consumer, key="")
        if consumer_id is not None:
            ctx.consumer = consumer
        return None
