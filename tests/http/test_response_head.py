"""The upstream response head as wire bytes: pairs and reason phrase parsed on demand."""

from __future__ import annotations

from forecourt.http.response_head import header_pairs, reason_phrase


def test_header_pairs_keep_order_duplicates_and_spelling() -> None:
    head = (
        b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nX-Odd:  padded  \r\nset-cookie: b=2\r\n"
        b"Empty:\r\nContent-Length: 2\r\n\r\n"
    )
    assert header_pairs(head) == [
        (b"Set-Cookie", b"a=1"),
        (b"X-Odd", b"padded"),
        (b"set-cookie", b"b=2"),
        (b"Empty", b""),
        (b"Content-Length", b"2"),
    ]


def test_header_pairs_of_a_head_without_headers() -> None:
    assert header_pairs(b"HTTP/1.1 204 No Content\r\n\r\n") == []


def test_a_value_may_contain_colons() -> None:
    assert header_pairs(b"HTTP/1.1 302 Found\r\nLocation: http://x:8080/a\r\n\r\n") == [
        (b"Location", b"http://x:8080/a")
    ]


def test_reason_phrase() -> None:
    assert reason_phrase(b"HTTP/1.1 200 OK\r\n\r\n") == b"OK"
    assert reason_phrase(b"HTTP/1.1 418 I'm a teapot\r\nA: b\r\n\r\n") == b"I'm a teapot"
    assert reason_phrase(b"HTTP/1.1 200 \r\n\r\n") == b""
    assert reason_phrase(b"HTTP/1.1 200\r\n\r\n") == b""
