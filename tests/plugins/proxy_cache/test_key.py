"""Cache keys: Kong 3.x's recipe (sha256 of prefix|method|path|query|headers) and Vary variants."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forecourt.plugins.proxy_cache.key import (
    cache_key,
    headers_part,
    key_prefix,
    parse_query,
    query_part,
    variant_key,
)


def kong(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize(
    ("consumer", "route", "prefix"),
    [("c1", "r", "c1:r"), (None, "r", "r"), ("c1", None, "default"), (None, None, "default")],
)
def test_prefix(consumer: str | None, route: str | None, prefix: str) -> None:
    assert key_prefix(consumer, route) == prefix


@pytest.mark.parametrize(
    ("query", "parsed"),
    [
        (b"", {}),
        (b"?", {}),
        (b"?a=1", {"a": "1"}),
        (b"?flag", {"flag": True}),
        (b"?a=", {"a": ""}),
        (b"?a=2&a=1", {"a": ["2", "1"]}),
        (b"?q=hello+world&x=%2F", {"q": "hello world", "x": "/"}),
        (b"?&&a=1&", {"a": "1"}),
    ],
)
def test_parse_query(query: bytes, parsed: dict[str, object]) -> None:
    assert parse_query(query) == parsed


@pytest.mark.parametrize(
    ("query", "vary", "part"),
    [
        (b"?b=2&a=1", None, "a=1:b=2"),  # every parameter, sorted by name
        (b"?a=2&a=1&flag", None, "a=1,2:flag"),  # repeated values sorted; a bare name alone
        (b"?b=2&a=1&c=3", ("c", "a"), "c=3:a=1"),  # only the listed ones, in config order
        (b"?b=2", ("a",), ""),
        (b"", None, ""),
    ],
)
def test_query_part(query: bytes, vary: tuple[str, ...] | None, part: str) -> None:
    assert query_part(query, vary) == part


def test_headers_part_matches_names_case_insensitively() -> None:
    headers = [(b"X-Tenant", b"acme"), (b"accept", b"b"), (b"Accept", b"a")]
    assert headers_part(headers, None) == ""
    assert headers_part(headers, ("x-tenant", "Accept")) == "x-tenant=acme:Accept=a,b"
    assert headers_part(headers, ("X_Tenant",)) == "X_Tenant=acme"


def test_cache_key_is_kongs_recipe() -> None:
    headers = [(b"X-Tenant", b"acme")]
    key = cache_key("c1:r", "GET", "/orders", b"?b=2&a=1", headers, None, ("X-Tenant",))
    assert key == kong("c1:r|GET|/orders|a=1:b=2|X-Tenant=acme")
    assert cache_key("r", "GET", "/", b"", [], None, None) == kong("r|GET|/||")
    assert len(key) == 64


@given(st.dictionaries(st.text("abcxyz", min_size=1, max_size=3), st.text("0123", max_size=3), max_size=5))
def test_parameter_order_never_changes_the_key(params: dict[str, str]) -> None:
    pairs = [f"{name}={value}" for name, value in params.items()]
    forward = ("?" + "&".join(pairs)).encode()
    backward = ("?" + "&".join(reversed(pairs))).encode()
    assert cache_key("r", "GET", "/", forward, [], None, None) == cache_key(
        "r", "GET", "/", backward, [], None, None
    )


def test_variant_keys_follow_the_vary_headers() -> None:
    primary = "k" * 64
    names = (b"accept-encoding", b"accept-language")
    en = variant_key(primary, [(b"Accept-Language", b"en")], names)
    assert en.startswith(primary + ".")
    assert en == variant_key(primary, [(b"accept-language", b"en"), (b"X-Other", b"1")], names)
    assert en != variant_key(primary, [(b"Accept-Language", b"fr")], names)
    assert en != variant_key(primary, [(b"Accept-Language", b"en"), (b"Accept-Encoding", b"gzip")], names)
    # Whitespace inside a value is not a difference.
    assert variant_key(primary, [(b"Accept-Language", b"en,  fr")], names) == variant_key(
        primary, [(b"Accept-Language", b"en, fr")], names
    )
