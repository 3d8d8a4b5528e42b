"""ResponseHead: an upstream head stays bytes until a plugin needs its header list."""

from __future__ import annotations

from forecourt.pipeline import ResponseHead

WIRE = b"HTTP/1.1 200 OK\r\nServer: up\r\nX-RateLimit-Limit-Second: 5\r\nContent-Length: 2\r\n\r\n"


def test_adding_keeps_the_wire_head_unparsed() -> None:
    head = ResponseHead(200, b"", None, WIRE)
    head.add(b"X-One", b"1")
    head.extend([(b"X-Two", b"2"), (b"X-Three", b"3")])
    assert not head.parsed
    assert head.added == [(b"X-One", b"1"), (b"X-Two", b"2"), (b"X-Three", b"3")]


def test_reading_the_list_parses_the_wire_and_keeps_what_was_added() -> None:
    head = ResponseHead(200, b"", None, WIRE)
    head.add(b"X-One", b"1")
    assert head.headers == [
        (b"Server", b"up"),
        (b"X-RateLimit-Limit-Second", b"5"),
        (b"Content-Length", b"2"),
        (b"X-One", b"1"),
    ]
    assert head.parsed
    assert head.added == []
    head.add(b"X-Two", b"2")  # after parsing, straight into the list
    assert head.headers[-1] == (b"X-Two", b"2")


def test_set_and_remove_replace_the_upstream_header() -> None:
    head = ResponseHead(200, b"", None, WIRE)
    head.set(b"x-ratelimit-limit-second", b"9")
    head.remove(b"server")
    assert head.headers == [(b"Content-Length", b"2"), (b"x-ratelimit-limit-second", b"9")]
    assert head.get(b"X-RATELIMIT-LIMIT-SECOND") == b"9"


def test_may_contain_looks_at_names_without_parsing() -> None:
    head = ResponseHead(200, b"", None, WIRE)
    assert head.may_contain(b"ratelimit")
    assert not head.may_contain(b"cache-control")
    assert not head.parsed
    head.add(b"Cache-Control", b"no-store")
    assert head.may_contain(b"cache-control")


def test_a_head_made_from_pairs_behaves_as_before() -> None:
    head = ResponseHead(404, b"", [(b"Content-Type", b"text/plain")])
    head.add(b"X-A", b"1")
    assert head.parsed
    assert head.headers == [(b"Content-Type", b"text/plain"), (b"X-A", b"1")]
