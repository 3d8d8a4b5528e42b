"""normalize_path: table-driven cases for the tricks it must defeat, then its properties."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forecourt.routing import InvalidPath, normalize_path

CASES = [
    # already canonical: returned as is
    ("/", "/"),
    ("/api/orders", "/api/orders"),
    ("/api/orders/", "/api/orders/"),
    ("/a/b.", "/a/b."),
    ("/a/..b/c", "/a/..b/c"),
    ("/a/.hidden", "/a/.hidden"),
    # traversal spellings all resolve before matching
    ("/api/orders/../admin", "/api/admin"),
    ("/api//admin", "/api/admin"),
    ("/api/%2e%2e/admin", "/admin"),
    ("/api/orders/%2e%2e/admin", "/api/admin"),
    ("/api/orders/.%2E/admin", "/api/admin"),
    ("/api/orders/%2E./admin", "/api/admin"),
    ("/api/./orders", "/api/orders"),
    ("/api/%2e/orders", "/api/orders"),
    ("/a//../b", "/b"),  # slashes merge first, as nginx and Kong do
    ("///a///b//", "/a/b/"),
    # dot segments at the end keep the trailing slash (RFC 3986 5.2.4)
    ("/a/b/..", "/a/"),
    ("/a/b/.", "/a/b/"),
    ("/a/..", "/"),
    ("/.", "/"),
    # above the root: clamped, not rejected
    ("/..", "/"),
    ("/../../etc/passwd", "/etc/passwd"),
    ("/a/../../b", "/b"),
    # encoded slashes and other reserved characters are never decoded; hex is upper-cased
    ("/a%2Fb", "/a%2Fb"),
    ("/a%2fb", "/a%2Fb"),
    ("/a/..%2F..%2Fadmin", "/a/..%2F..%2Fadmin"),
    ("/a/%2e%2e%2fadmin", "/a/..%2Fadmin"),
    ("/q%3fx%23y", "/q%3Fx%23y"),
    ("/%25", "/%25"),
    ("/%252e%252e/x", "/%252e%252e/x"),  # no double decoding
    ("/sp%20ace", "/sp%20ace"),
    ("/nul%00", "/nul%00"),
    # unreserved characters are decoded
    ("/%41%62%7e%2d%5f%2E%30", "/Ab~-_.0"),
    ("/%7E/%7e", "/~/~"),
]


@pytest.mark.parametrize(("raw", "expected"), CASES)
def test_normalize_table(raw: str, expected: str) -> None:
    assert normalize_path(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "api/orders",
        "*",
        "http://example.com/a",
        "/a%",
        "/a%2",
        "/a%zz",
        "/a%g1",
        "/a%%41",
        "/a b",
        "/a\tb",
        "/a\x00b",
        "/a\r\nb",
        "/a\x7fb",
        "/caf\xe9",
        "/\u2025",
    ],
)
def test_normalize_rejects(raw: str) -> None:
    with pytest.raises(InvalidPath):
        normalize_path(raw)


def test_fast_path_returns_the_same_object() -> None:
    raw = "/api/orders/123"
    assert normalize_path(raw) is raw


# Paths made of the pieces that matter: separators, dots spelled every way, encoded slashes,
# escapes of unreserved and reserved characters, plain text.
_PIECES = ["/", "/", ".", "..", "%2e", "%2E", "%2f", "%2F", "%41", "%7e", "%25", "%3A", "a", "b", "~", "-"]
paths = st.lists(st.sampled_from(_PIECES), max_size=16).map(lambda parts: "/" + "".join(parts))


@given(paths)
def test_idempotent(raw: str) -> None:
    once = normalize_path(raw)
    assert normalize_path(once) == once


@given(paths)
def test_output_has_no_dot_segments_or_empty_segments(raw: str) -> None:
    out = normalize_path(raw)
    assert out.startswith("/")
    assert "//" not in out
    assert "/./" not in out
    assert "/../" not in out
    assert not out.endswith(("/.", "/.."))


@given(paths)
def test_never_decodes_slash_or_invents_separators(raw: str) -> None:
    out = normalize_path(raw)
    assert "%2f" not in out
    assert out.count("/") <= raw.count("/")
    # Every escape left is upper-case and not of an unreserved character.
    for escape in re.findall(r"%(..)", out):
        assert escape == escape.upper()
        assert not (chr(int(escape, 16)).isalnum() or chr(int(escape, 16)) in "-._~")


@given(st.lists(st.sampled_from(["a", "b", "%2F", "%2f", "x%2Fy", "%41"]), min_size=1, max_size=8))
def test_encoded_slashes_survive_without_dot_segments(segments: list[str]) -> None:
    raw = "/" + "/".join(segments)
    assert normalize_path(raw).count("%2F") == raw.upper().count("%2F")


@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255), max_size=20))
def test_arbitrary_latin1_either_normalises_or_raises_invalid_path(tail: str) -> None:
    try:
        out = normalize_path("/" + tail)
    except InvalidPath:
        return
    assert out.isascii()
    assert out.isprintable()
    assert " " not in out
    assert normalize_path(out) == out
