"""Request header classification (forecourt.http.headers)."""

from __future__ import annotations

import pytest

from forecourt.http import headers
from forecourt.http.headers import (
    CONNECTION,
    DROPPED,
    FORWARDED,
    HOST,
    classify_request_header,
    request_header_kind,
)

REALISTIC = [
    b"User-Agent",
    b"Accept",
    b"Accept-Language",
    b"Accept-Encoding",
    b"Authorization",
    b"X-Request-Id",
    b"Cookie",
    b"Referer",
    b"Cache-Control",
    b"Content-Type",
    b"X-Api-Key",
]


@pytest.mark.parametrize("spelling", [bytes.lower, bytes.upper, bytes.title])
def test_every_special_header_is_classified_in_any_case(spelling: object) -> None:
    for name, kind in headers._SPECIAL_REQUEST_HEADERS.items():
        spelled = spelling(name)  # type: ignore[operator]
        assert classify_request_header(spelled) == kind == request_header_kind(spelled), spelled


def test_common_client_headers_are_decided_by_their_shape_alone() -> None:
    for name in REALISTIC:
        assert classify_request_header(name) == FORWARDED == request_header_kind(name)
    # Only X-Api-Key shares a shape (9 letters, x) with a special one (x-real-ip): it takes the lookup.
    marked = [n for n in REALISTIC if headers._MAYBE_SPECIAL[headers.header_shape(n)]]
    assert marked == [b"X-Api-Key"]


def test_names_sharing_a_shape_with_a_special_one_still_get_their_own_kind() -> None:
    # Same length and first letter as "host" / "connection", but forwarded.
    assert headers.header_shape(b"Hint") == headers.header_shape(b"host")
    assert classify_request_header(b"Hint") == FORWARDED
    assert classify_request_header(b"Conversion") == FORWARDED
    assert classify_request_header(b"HOST") == HOST
    assert classify_request_header(b"connection") == CONNECTION


def test_an_empty_name_is_dropped() -> None:
    assert classify_request_header(b"") == DROPPED


def test_shape_marks_never_miss_a_marked_name_in_any_case() -> None:
    marks = headers.shape_marks([b"Authorization", b"x-consumer-id", b""])
    for name in (b"authorization", b"AUTHORIZATION", b"Authorization", b"X-Consumer-ID", b"x-consumer-id"):
        assert marks[headers.header_shape(name)] == 1
    # Other shapes are not marked; a name of the same shape is (the caller compares names next).
    assert [n for n in (b"Accept", b"X-Request-Id", b"Cache-Control") if marks[headers.header_shape(n)]] == []
    assert marks[headers.header_shape(b"Accept-Charsets")] == 0
    assert marks[headers.header_shape(b"Authorizatiox")] == 1
