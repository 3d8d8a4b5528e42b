"""Kong `$(...)` templates: what compiles, what is refused at load, and how values render."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from forecourt.config import load_config
from forecourt.http.request import Request
from forecourt.http.server import ClientConnection
from forecourt.observability import AccessLog
from forecourt.pipeline import Consumer, Context
from forecourt.plan.build import PlanBuilder
from forecourt.plugins.templates import ContextSource, TemplateError, compile_template, parse_query
from forecourt.routing import RouteSpec
from forecourt.routing.match import RouteMatch
from forecourt.runtime import GatewayRuntime, Listener


class DictSource:
    def __init__(self, values: dict[tuple[str, str], str]) -> None:
        self.values = values
        self.calls: list[tuple[str, str]] = []

    def value(self, namespace: str, key: str) -> str | None:
        self.calls.append((namespace, key))
        return self.values.get((namespace, key))


SOURCE = DictSource(
    {
        ("headers", "x-user"): "alice",
        ("query_params", "page"): "3",
        ("uri_captures", "id"): "42",
        ("uri_captures", "1"): "first",
        ("consumer", "username"): "bob",
        ("jwt", "sub"): "subject",
        ("shared", "tenant"): "acme",
    }
)


@pytest.mark.parametrize(
    ("text", "rendered"),
    [
        ("plain", "plain"),
        ("", ""),
        ("$(headers.x_user)", "alice"),
        ("$(headers['X-User'])", "alice"),
        ('$(headers["x-user"])', "alice"),
        ("Bearer $(query_params.page)!", "Bearer 3!"),
        ("/users/$(uri_captures.id)/$(uri_captures[1])", "/users/42/first"),
        ("$(consumer.username)", "bob"),
        ("$(jwt.sub)", "subject"),
        ("$(shared.tenant)", "acme"),
        ("$(headers.missing)", ""),
        ('$(uri_captures["user-id"] or query_params["page"] or "unknown")', "3"),
        ('$(headers.none or "unknown")', "unknown"),
        ("$('$(escaped)')", "$(escaped)"),
        ("a $( headers.x_user ) b", "a alice b"),
    ],
)
def test_render(text: str, rendered: str) -> None:
    assert compile_template(text).render(SOURCE) == rendered


def test_static_templates_never_touch_the_source() -> None:
    source = DictSource({})
    template = compile_template("no placeholders")
    assert template.static == "no placeholders"
    assert template.render(source) == "no placeholders"
    assert source.calls == []
    assert compile_template("$(jwt.sub) $(headers.a)").namespaces == {"jwt", "headers"}


def test_dotted_header_names_also_match_hyphens() -> None:
    source = DictSource({("headers", "x-custom-header"): "v"})
    assert compile_template("$(headers.X_Custom_Header)").render(source) == "v"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("$(headers.x", "unterminated template placeholder"),
        ("$()", "empty placeholder"),
        ("$(foo.bar)", "unknown name 'foo'"),
        ("$(headers)", "headers needs a key"),
        ("$(headers.a.b)", "nested lookups are not supported"),
        ("$(jwt.a.b)", "nested lookups are not supported"),
        ("$(headers.a .. 'x')", "'..' concatenation is not supported"),
        ("$(headers.a and 'x')", "unexpected 'and'"),
        ("$((function() return 1 end)())", "unexpected '('"),
        ("$(consumer.email)", "consumer has no field 'email'"),
        ("$(headers.a or)", "nothing after 'or'"),
        ("$(headers[x])", "expected a quoted key or a number"),
    ],
)
def test_unsupported_expressions_are_refused_naming_what_is_supported(text: str, why: str) -> None:
    with pytest.raises(TemplateError) as caught:
        compile_template(text)
    message = str(caught.value)
    assert why in message
    if "unterminated" not in why:
        assert "supported: headers.<name>" in message


def test_namespaces_can_be_restricted_by_the_caller() -> None:
    compile_template("$(headers.a)", namespaces={"headers"})
    with pytest.raises(TemplateError, match="unknown name 'jwt'"):
        compile_template("$(jwt.sub)", namespaces={"headers"})


def test_parse_query() -> None:
    assert parse_query(b"?a=1&b&c=%20x+y&&a=2") == [("a", "1"), ("b", None), ("c", " x y"), ("a", "2")]
    assert parse_query(b"") == []


ContextFactory = Callable[[list[tuple[bytes, bytes]], bytes, dict[str, str]], Context]

_ROUTE_WITH_A_PLUGIN = """
_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:9
  routes:
  - name: r
    paths: ["/"]
    plugins:
    - name: correlation-id
"""


@pytest.fixture
def make_context(tmp_path: Path) -> Iterator[ContextFactory]:
    """A request's plugin context built from real parts: a loaded route, a runtime, a client
    connection (the per-request classes are compiled, and compiled code checks their types)."""
    config = tmp_path / "kong.yml"
    config.write_text(_ROUTE_WITH_A_PLUGIN)
    builder = PlanBuilder()
    plan = builder.build(load_config(str(config), builder.registry))
    route = plan.routes["r"]
    chain = route.chain
    assert chain is not None
    loop = asyncio.new_event_loop()
    runtime = GatewayRuntime(plan, loop=loop, access_log=AccessLog.open("off"))
    client = ClientConnection(runtime, Listener("127.0.0.1", 8000))
    client.client_ip = "127.0.0.1"

    def make(headers: list[tuple[bytes, bytes]], query: bytes, captures: dict[str, str]) -> Context:
        req = Request(0.0)
        req.headers = headers
        req.query = query
        spec = RouteSpec(name="r", paths=("/",))
        req.match = RouteMatch(spec, captures, "/", 1)
        return Context(req, client, route, chain)

    yield make
    loop.close()


def test_context_source_reads_a_snapshot_of_the_request(make_context: ContextFactory) -> None:
    ctx = make_context(
        [(b"X-User", b"alice"), (b"Accept", b"a"), (b"accept", b"b")], b"?page=2&page=3", {"id": "7"}
    )
    ctx.consumer = Consumer(id="c1", username="bob", custom_id=None)
    ctx.jwt_claims = {"sub": "s", "admin": True, "n": 5}
    ctx.shared["tenant"] = "acme"
    source = ContextSource(ctx)
    ctx.req.headers.append((b"X-Later", b"no"))  # changes after the snapshot are not seen
    ctx.req.query = b"?page=9"
    template = compile_template(
        "$(headers.x_user) $(headers.accept) $(query_params.page) $(uri_captures.id) "
        "$(consumer.username) $(consumer.id) $(consumer.custom_id) $(jwt.sub) $(jwt.admin) $(jwt.n) "
        "$(shared.tenant) [$(headers.x_later)]"
    )
    assert template.render(source) == "alice a, b 2 7 bob c1  s true 5 acme []"


def test_context_source_without_consumer_or_jwt(make_context: ContextFactory) -> None:
    source = ContextSource(make_context([], b"", {}))
    assert compile_template('$(consumer.username or jwt.sub or "anonymous")').render(source) == "anonymous"
