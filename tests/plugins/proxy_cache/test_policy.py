"""Storability and freshness: Kong's rules, and the RFC 9111 rules Forecourt always applies."""

from __future__ import annotations

import time
from email.utils import formatdate
from typing import Any

import pytest

from forecourt.plugins.proxy_cache.policy import (
    MediaTypeMatcher,
    Storable,
    freshness,
    parse_directives,
    parse_media_type,
    storable,
    vary_names,
)

NOW = 1_700_000_000.0
JSON = (b"Content-Type", b"application/json")


def decide(headers: list[tuple[bytes, bytes]], *, status: int = 200, **options: Any) -> Storable | None:
    settings: dict[str, Any] = {
        "statuses": frozenset({200, 301, 404}),
        "content_type": MediaTypeMatcher(["application/json", "text/plain"]),
        "cache_control": False,
        "cache_ttl": 300,
        "storage_ttl": None,
        "stale_if_error": 0,
        "now": NOW,
    }
    settings.update(options)
    return storable(status, headers, **settings)


@pytest.mark.parametrize(
    ("values", "parsed"),
    [
        ([], {}),
        ([b"no-store"], {"no-store": None}),
        ([b"Max-Age=60, private"], {"max-age": "60", "private": None}),
        ([b'max-age="30"', b"public"], {"max-age": "30", "public": None}),
        ([b" , ,max-age=1"], {"max-age": "1"}),
        ([b'private="set-cookie"'], {"private": "set-cookie"}),
    ],
)
def test_parse_directives(values: list[bytes], parsed: dict[str, str | None]) -> None:
    assert parse_directives(values) == parsed


def test_freshness_prefers_s_maxage_then_max_age_then_expires() -> None:
    date = formatdate(NOW, usegmt=True).encode()
    later = formatdate(NOW + 120, usegmt=True).encode()
    assert freshness({"s-maxage": "10", "max-age": "20"}, later, date, NOW) == 10
    assert freshness({"max-age": "20"}, later, date, NOW) == 20
    assert freshness({}, later, date, NOW) == 120
    assert freshness({}, later, None, NOW + 60) == 60
    assert freshness({}, b"0", date, NOW) == 0  # invalid Expires: already expired
    assert freshness({"max-age": "abc"}, later, date, NOW) == 0
    assert freshness({}, None, None, NOW) == 0


def test_vary_names() -> None:
    assert vary_names([]) == ()
    assert vary_names([b"Accept-Encoding, accept-language", b"Accept-Encoding"]) == (
        b"accept-encoding",
        b"accept-language",
    )
    assert vary_names([b"Accept, *"]) is None


@pytest.mark.parametrize(
    ("patterns", "value", "matches"),
    [
        (["application/json"], b"application/json", True),
        (["application/json"], b"Application/JSON", True),
        (["application/json"], b"application/json; charset=utf-8", False),  # Kong: parameters exact
        (["application/json; charset=utf-8"], b"application/json;charset=UTF-8", True),
        (["text/*"], b"text/html", True),
        (["*/*"], b"image/png", True),
        (["*/*"], b"image/png; q=1", False),
        (["text/plain"], b"", False),
        (["text/plain"], b"garbage", False),
    ],
)
def test_media_types(patterns: list[str], value: bytes, matches: bool) -> None:
    assert MediaTypeMatcher(patterns)(value) is matches


def test_media_type_parsing() -> None:
    assert parse_media_type('text/plain; charset="UTF-8"') == (
        "text",
        "plain",
        frozenset({("charset", "utf-8")}),
    )
    assert parse_media_type("json") is None
    with pytest.raises(ValueError, match="invalid media type"):
        MediaTypeMatcher(["nope"])


def test_kongs_status_and_content_type_rules() -> None:
    assert decide([JSON]) == Storable(ttl=300, stale_if_error=0, storage_ttl=300, vary=(), age=0)
    assert decide([JSON], status=500) is None
    assert decide([(b"Content-Type", b"text/html")]) is None
    assert decide([]) is None
    assert decide([JSON, JSON]) is None  # two Content-Type headers: cannot examine (Kong)


@pytest.mark.parametrize(
    "header",
    [
        (b"Cache-Control", b"private"),
        (b"Cache-Control", b"public, no-store"),
        (b"Set-Cookie", b"a=b"),
        (b"Vary", b"*"),
    ],
)
@pytest.mark.parametrize("cache_control", [False, True])
def test_private_responses_are_never_storable(header: tuple[bytes, bytes], cache_control: bool) -> None:
    assert decide([JSON, (b"Cache-Control", b"max-age=60"), header], cache_control=cache_control) is None


def test_cache_control_freshness_rules() -> None:
    cc = {"cache_control": True}
    assert decide([JSON], **cc) is None  # no freshness information
    assert decide([JSON, (b"Cache-Control", b"max-age=60")], **cc) == Storable(60, 0, 60, (), 0)
    assert decide([JSON, (b"Cache-Control", b"max-age=60, no-cache")], **cc) is None
    assert decide([JSON, (b"Cache-Control", b"max-age=0")], **cc) is None
    # The upstream's own Age has been spent already.
    aged = decide([JSON, (b"Cache-Control", b"max-age=60"), (b"Age", b"20")], **cc)
    assert aged == Storable(ttl=60, stale_if_error=0, storage_ttl=40, vary=(), age=20)
    assert decide([JSON, (b"Cache-Control", b"max-age=60"), (b"Age", b"60")], **cc) is None
    # Without cache_control, max-age and no-cache are not read (Kong).
    assert decide([JSON, (b"Cache-Control", b"max-age=0, no-cache")]) is not None


def test_storage_time_covers_storage_ttl_and_stale_if_error() -> None:
    assert decide([JSON], storage_ttl=600) == Storable(300, 0, 600, (), 0)
    assert decide([JSON], storage_ttl=10) == Storable(300, 0, 10, (), 0)  # Kong drops it early
    assert decide([JSON], stale_if_error=60) == Storable(300, 60, 360, (), 0)
    directive = [JSON, (b"Cache-Control", b"max-age=10, stale-if-error=5")]
    assert decide(directive, cache_control=True, stale_if_error=60) == Storable(10, 5, 15, (), 0)
    assert decide(directive, stale_if_error=60) == Storable(300, 60, 360, (), 0)


def test_vary_is_recorded() -> None:
    decision = decide([JSON, (b"Vary", b"Accept-Language")])
    assert decision is not None and decision.vary == (b"accept-language",)


def test_expires_relative_to_date() -> None:
    now = time.time()
    headers = [
        JSON,
        (b"Date", formatdate(now, usegmt=True).encode()),
        (b"Expires", formatdate(now + 30, usegmt=True).encode()),
    ]
    decision = decide(headers, cache_control=True, now=now)
    assert decision is not None and 29 <= decision.ttl <= 31
