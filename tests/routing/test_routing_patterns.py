"""Kong (PCRE) regex paths translated to Python."""

from __future__ import annotations

import pytest

from forecourt.routing import InvalidRoutePattern, compile_kong_regex
from forecourt.routing.patterns import literal_prefix


def test_named_groups_are_translated() -> None:
    found = compile_kong_regex(r"/users/(?<id>\d+)/(?'tab'\w+)").match("/users/42/posts")
    assert found is not None
    assert found.group("id") == "42"
    assert found.group("tab") == "posts"


def test_named_backreferences_are_translated() -> None:
    for body in (r"/(?<w>\w+)/\k<w>", r"/(?<w>\w+)/\k'w'", r"/(?<w>\w+)/\k{w}"):
        regex = compile_kong_regex(body)
        assert regex.match("/ab/ab")
        assert not regex.match("/ab/cd")


def test_lookbehind_is_left_alone() -> None:
    regex = compile_kong_regex(r"/x(?<=/x)(?<!y)/z")
    assert regex.match("/x/z")


def test_group_syntax_inside_a_class_or_escaped_is_literal() -> None:
    assert compile_kong_regex(r"/[(?<]+").match("/(?<")
    assert compile_kong_regex(r"/\(?<a").match("/<a")
    assert compile_kong_regex(r"/[]a]").match("/]")


def test_quoted_literal() -> None:
    regex = compile_kong_regex(r"/v\Q1.0+\E/x")
    assert regex.match("/v1.0+/x")
    assert not regex.match("/v100+/x")


def test_route_path_spelling_with_tilde_is_accepted() -> None:
    assert compile_kong_regex(r"~/orders/\d+").match("/orders/1")


def test_match_is_anchored_at_the_path_start() -> None:
    regex = compile_kong_regex(r"/orders/\d+")
    assert regex.match("/orders/1/items")
    assert not regex.match("/api/orders/1")


@pytest.mark.parametrize("body", ["/(unclosed", "/a{2,1}", r"/(?R)", "/(?<1bad>x)", "*a"])
def test_invalid_regex_is_a_clear_error(body: str) -> None:
    with pytest.raises(InvalidRoutePattern, match="invalid regex path"):
        compile_kong_regex(body)


@pytest.mark.parametrize(
    ("body", "prefix"),
    [
        (r"/api/v\d+", "/api/v"),
        (r"/api/vs?", "/api/v"),
        (r"^/api/x", "/api/x"),
        (r"/a\.b\/c.", "/a.b/c"),
        (r"/a|/b", ""),
        (r"(?i)/api", ""),
        (r"/api/(a|b)", "/api/"),
        (r".*", ""),
        (r"/ab{2}", "/a"),
        (r"/a\d", "/a"),
    ],
)
def test_literal_prefix(body: str, prefix: str) -> None:
    assert literal_prefix(body) == prefix
