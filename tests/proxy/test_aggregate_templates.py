"""Aggregate templates: the `backends.<name>...` path namespace and the values backends are sent."""

from __future__ import annotations

from typing import Any

import pytest

from forecourt.config.aggregate import AGGREGATE_NAMESPACES
from forecourt.http.request import Request
from forecourt.plugins.templates import NAMESPACES, TemplateError, compile_template
from forecourt.proxy.aggregate import AggregateSource, BackendOutcome, _PathSource
from forecourt.proxy.backend_call import BackendAnswer


def outcome(name: str, value: Any, status: int = 200) -> BackendOutcome:
    result = BackendOutcome(name)
    result.value = value
    result.answer = BackendAnswer(status, [(b"ETag", b'"v1"')], b"", "127.0.0.1:1")
    return result


def source(**outcomes: BackendOutcome) -> AggregateSource:
    req = Request(0.0)
    req.headers = [(b"X-User", b"ada"), (b"X-User", b"bob")]
    req.query = b"?page=2&q=a+b"
    return AggregateSource(req, None, dict(outcomes))


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("$(backends.user.body.id)", "user.body.id"),
        ("$(backends.user.body.items[0].sku)", "user.body.items.0.sku"),
        ('$(backends["user"].body["first-name"])', "user.body.first-name"),
        ("$(backends.user.status)", "user.status"),
    ],
)
def test_backend_paths_compile_to_one_dotted_key(text: str, key: str) -> None:
    template = compile_template(text, AGGREGATE_NAMESPACES)
    (placeholder,) = template.parts
    assert not isinstance(placeholder, str)
    (lookup,) = placeholder
    assert not isinstance(lookup, str)
    assert (lookup.namespace, lookup.keys) == ("backends", (key,))


def test_plugins_do_not_get_the_backends_namespace() -> None:
    with pytest.raises(TemplateError, match="unknown name 'backends'"):
        compile_template("$(backends.user.body.id)", NAMESPACES)
    with pytest.raises(TemplateError, match="in the backends path"):
        compile_template("$(backends.user.body.)", AGGREGATE_NAMESPACES)


def test_backend_values_render_from_finished_backends() -> None:
    user = outcome("user", {"id": 7, "tags": ["a", "b"], "ok": True, "profile": {"city": "Oslo"}})
    src = source(user=user, down=BackendOutcome("down").fail(502, "refused"))

    def render(text: str) -> str:
        return compile_template(text, AGGREGATE_NAMESPACES).render(src)

    assert render("$(backends.user.body.id)") == "7"
    assert render("$(backends.user.body.tags.1)") == "b"
    assert render("$(backends.user.body.ok)") == "true"
    assert render("$(backends.user.body.profile)") == '{"city":"Oslo"}'
    assert render("$(backends.user.status)/$(backends.user.headers.etag)") == '200/"v1"'
    assert render('$(backends.user.body.missing or "none")') == "none"
    assert render('$(backends.down.body.id or "none")') == "none"


def test_request_values_render_like_kongs_templates() -> None:
    src = source()
    assert compile_template("$(headers.x_user)", AGGREGATE_NAMESPACES).render(src) == "ada, bob"
    assert compile_template("$(query_params.q)", AGGREGATE_NAMESPACES).render(src) == "a b"
    assert compile_template("$(consumer.username)", AGGREGATE_NAMESPACES).render(src) == ""


@pytest.mark.parametrize(
    ("value", "segment"),
    [("42", "42"), ("a b/c", "a%20b%2Fc"), ("..", "%2E%2E"), (".", "%2E"), ("a?b#c", "a%3Fb%23c")],
)
def test_a_path_value_stays_one_segment(value: str, segment: str) -> None:
    src = source(user=outcome("user", {"id": value}))
    path = compile_template("/users/$(backends.user.body.id)/orders", AGGREGATE_NAMESPACES)
    assert path.render(_PathSource(src)) == f"/users/{segment}/orders"
