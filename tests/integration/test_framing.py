"""Strict request framing over the wire: every malformed message is refused before any upstream.

Each case sends raw bytes to a real gateway in front of a `RecordingUpstream` and asserts three
things: the status the gateway answers, that it closes the connection afterwards (the rest of the
stream cannot be trusted), and that the upstream received not one byte.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import orjson
import pytest

from tests.conftest import single_service
from tests.support.gateway import GatewayProcess
from tests.support.upstreams import RecordingUpstream, settle
from tests.support.wire import WireClient


@pytest.fixture(scope="module")
def upstream() -> Iterator[RecordingUpstream]:
    rec = RecordingUpstream().start()
    yield rec
    rec.stop()


@pytest.fixture(scope="module")
def gateway(
    module_gateway_factory: Callable[..., GatewayProcess], upstream: RecordingUpstream
) -> GatewayProcess:
    return module_gateway_factory(single_service(upstream.port))


@pytest.fixture
def recording(upstream: RecordingUpstream) -> RecordingUpstream:
    upstream.clear()
    return upstream


H = b"Host: example.test\r\n"

# (id, bytes sent, status expected)
MALFORMED: list[tuple[str, bytes, int]] = [
    (
        "content-length-then-transfer-encoding",
        b"POST /x HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        "transfer-encoding-then-content-length",
        b"POST /x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        "conflicting-content-length",
        b"POST /x HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        400,
    ),
    (
        "duplicate-content-length",
        b"POST /x HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        400,
    ),
    ("content-length-list", b"POST /x HTTP/1.1\r\n" + H + b"Content-Length: 3, 3\r\n\r\nabc", 400),
    ("content-length-negative", b"POST /x HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\nabc", 400),
    ("content-length-plus", b"POST /x HTTP/1.1\r\n" + H + b"Content-Length: +3\r\n\r\nabc", 400),
    ("content-length-not-a-number", b"POST /x HTTP/1.1\r\n" + H + b"Content-Length: 3a\r\n\r\nabc", 400),
    (
        "malformed-chunk-size",
        b"POST /x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    (
        "chunk-size-overflow",
        b"POST /x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\nabc\r\n",
        400,
    ),
    (
        "chunk-data-longer-than-size",
        b"POST /x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n",
        400,
    ),
    ("bare-cr-in-header", b"GET /x HTTP/1.1\r\n" + H + b"X-A: b\rc\r\n\r\n", 400),
    ("bare-lf-line-endings", b"GET /x HTTP/1.1\nHost: example.test\nX-A: b\n\n", 400),
    ("bare-lf-after-headers", b"GET /x HTTP/1.1\r\n" + H + b"X-A: b\n\r\n", 400),
    ("nul-in-header-value", b"GET /x HTTP/1.1\r\n" + H + b"X-A: b\x00c\r\n\r\n", 400),
    ("obs-fold", b"GET /x HTTP/1.1\r\n" + H + b"X-A: b\r\n c\r\n\r\n", 400),
    ("obs-fold-tab", b"GET /x HTTP/1.1\r\n" + H + b"X-A: b\r\n\tc\r\n\r\n", 400),
    ("space-before-colon", b"GET /x HTTP/1.1\r\n" + H + b"X-A : b\r\n\r\n", 400),
    ("space-before-colon-host", b"GET /x HTTP/1.1\r\nHost : example.test\r\n\r\n", 400),
    ("space-in-header-name", b"GET /x HTTP/1.1\r\n" + H + b"X A: b\r\n\r\n", 400),
    ("tab-in-header-name", b"GET /x HTTP/1.1\r\n" + H + b"X\tA: b\r\n\r\n", 400),
    ("header-without-colon", b"GET /x HTTP/1.1\r\n" + H + b"X-A b\r\n\r\n", 400),
    (
        "transfer-encoding-gzip",
        b"POST /x HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\nabc",
        501,
    ),
    (
        "transfer-encoding-gzip-chunked",
        b"POST /x HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        501,
    ),
    (
        "transfer-encoding-chunked-chunked",
        b"POST /x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        "transfer-encoding-chunked-twice",
        b"POST /x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n",
        400,
    ),
    (
        "transfer-encoding-chunked-not-last",
        b"POST /x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        "transfer-encoding-in-http-1.0",
        b"POST /x HTTP/1.0\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    ("two-host-headers", b"GET /x HTTP/1.1\r\n" + H + b"Host: other.test\r\n\r\n", 400),
    ("missing-host-http-1.1", b"GET /x HTTP/1.1\r\nX-A: b\r\n\r\n", 400),
    ("http-2.0-request-line", b"GET /x HTTP/2.0\r\n" + H + b"\r\n", 505),
    ("asterisk-target", b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("bad-percent-escape", b"GET /a%zz HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("truncated-percent-escape", b"GET /a% HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("control-byte-in-target", b"GET /a\x01b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("space-in-target", b"GET /a b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("non-ascii-in-target", b"GET /caf\xc3\xa9 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("garbage-request-line", b"HELLO\r\n\r\n", 400),
]


@pytest.mark.parametrize(
    ("sent", "expected"), [(c[1], c[2]) for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_malformed_request_is_refused_before_the_upstream(
    gateway: GatewayProcess, recording: RecordingUpstream, sent: bytes, expected: int
) -> None:
    with WireClient(gateway.port) as client:
        client.send(sent)
        resp = client.read_response()
        assert resp.status == expected, resp
        assert resp.header("connection") == "close"
        body = orjson.loads(resp.body)
        assert set(body) == {"message", "request_id"}
        assert body["request_id"] == resp.header("x-forecourt-request-id")
        assert client.read_all(timeout=2.0) == b"", "connection must close after a framing error"
    settle(0.15)
    assert recording.total_bytes == 0, recording.data()


def test_valid_request_then_malformed_in_one_write(
    gateway: GatewayProcess, recording: RecordingUpstream
) -> None:
    good = b"GET /first HTTP/1.1\r\n" + H + b"\r\n"
    bad = (
        b"POST /second HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    )
    with WireClient(gateway.port) as client:
        client.send(good + bad)
        first = client.read_response()
        assert first.status == 200
        assert first.body == b'{"ok":true}'
        second = client.read_response()
        assert second.status == 400
        assert client.read_all(timeout=2.0) == b""
    settle()
    seen = recording.data()
    assert seen.startswith(b"GET /first HTTP/1.1\r\n")
    assert b"/second" not in seen
    assert seen.count(b"HTTP/1.1\r\n") == 1


def test_valid_request_then_malformed_chunked_body_in_one_write(
    gateway: GatewayProcess, recording: RecordingUpstream
) -> None:
    """The second request's head is fine; its body is not. Buffering keeps it from the upstream."""
    good = b"GET /first HTTP/1.1\r\n" + H + b"\r\n"
    bad = b"POST /second HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n"
    with WireClient(gateway.port) as client:
        client.send(good + bad)
        assert client.read_response().status == 200
        assert client.read_response().status == 400
        assert client.read_all(timeout=2.0) == b""
    settle()
    seen = recording.data()
    assert b"/second" not in seen
    assert seen.count(b"HTTP/1.1\r\n") == 1


def test_malformed_after_a_complete_keep_alive_exchange(
    gateway: GatewayProcess, recording: RecordingUpstream
) -> None:
    """A bad request on a connection that already served one is refused the same way."""
    with WireClient(gateway.port) as client:
        assert client.request(b"GET /first HTTP/1.1\r\n" + H + b"\r\n").status == 200
        client.send(b"GET /second HTTP/1.1\r\n" + H + b"X-A : b\r\n\r\n")
        assert client.read_response().status == 400
        assert client.read_all(timeout=2.0) == b""
    settle()
    assert b"/second" not in recording.data()
