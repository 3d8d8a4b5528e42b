"""The upstream side over real sockets: failures mapped to 502/504, retries, pass-through of an
upstream's own errors, and the headers the gateway removes and adds in each direction."""

from __future__ import annotations

import re
import socket
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from forecourt import __version__
from tests.conftest import single_service
from tests.support.gateway import GatewayProcess
from tests.support.net import free_port
from tests.support.upstreams import (
    OK_RESPONSE,
    Behaviour,
    DemoUpstream,
    RecordingUpstream,
    request_complete,
    respond_with,
    settle,
)
from tests.support.wire import WireClient, WireResponse, get

H = b"Host: example.test\r\n"


@pytest.fixture(scope="module")
def demo() -> Iterator[DemoUpstream]:
    upstream = DemoUpstream("demo").start()
    yield upstream
    upstream.stop()


@pytest.fixture
def upstream_factory() -> Iterator[Callable[[Behaviour], RecordingUpstream]]:
    started: list[RecordingUpstream] = []

    def make(behaviour: Behaviour) -> RecordingUpstream:
        rec = RecordingUpstream(behaviour).start()
        started.append(rec)
        return rec

    yield make
    for rec in started:
        rec.stop()


def _reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def reset_after(prefix: bytes) -> Behaviour:
    """Once a whole request arrived, send `prefix` (part of a response), then reset."""

    def behave(sock: socket.socket, received: bytes) -> bool:
        if request_complete(received):
            if prefix:
                sock.sendall(prefix)
                time.sleep(0.05)
            _reset(sock)
            return True
        return False

    return behave


def never_answer(sock: socket.socket, received: bytes) -> bool:
    return False


def assert_kong_error(resp: WireResponse, status: int) -> dict[str, Any]:
    assert resp.status == status, resp
    assert resp.header("content-type") == "application/json; charset=utf-8"
    body = orjson.loads(resp.body)
    assert set(body) == {"message", "request_id"}
    assert body["request_id"] == resp.header("x-forecourt-request-id")
    assert re.fullmatch(r"[0-9a-f]{32}", body["request_id"])
    return dict(body)


def service_config(port: int, **service: Any) -> dict[str, Any]:
    config = single_service(port)
    config["services"][0].update(service)
    return config


# ---------------------------------------------------------------------------------------- failures


def test_connection_refused_is_502_with_kong_body(gateway_factory: Callable[..., GatewayProcess]) -> None:
    gateway = gateway_factory(service_config(free_port(), retries=2))
    with WireClient(gateway.port) as client:
        body = assert_kong_error(client.request(get("/refused")), 502)
        assert body["message"] == "An invalid response was received from the upstream server"
        # A gateway-made error keeps the client connection.
        assert_kong_error(client.request(get("/refused")), 502)


def test_reset_before_response_is_502(
    gateway_factory: Callable[..., GatewayProcess],
    upstream_factory: Callable[[Behaviour], RecordingUpstream],
) -> None:
    rec = upstream_factory(reset_after(b""))
    gateway = gateway_factory(service_config(rec.port, retries=0))
    with WireClient(gateway.port) as client:
        assert_kong_error(client.request(get("/reset")), 502)


def test_reset_in_the_middle_of_the_response_head_is_502(
    gateway_factory: Callable[..., GatewayProcess],
    upstream_factory: Callable[[Behaviour], RecordingUpstream],
) -> None:
    rec = upstream_factory(reset_after(b"HTTP/1.1 200 OK\r\nContent-Le"))
    gateway = gateway_factory(service_config(rec.port, retries=0))
    with WireClient(gateway.port) as client:
        assert_kong_error(client.request(get("/reset")), 502)


def test_reset_in_the_middle_of_the_body_closes_the_client(
    gateway_factory: Callable[..., GatewayProcess],
    upstream_factory: Callable[[Behaviour], RecordingUpstream],
) -> None:
    """The head already went to the client: the only honest signal left is closing the connection."""
    rec = upstream_factory(reset_after(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"))
    gateway = gateway_factory(service_config(rec.port))
    with WireClient(gateway.port) as client:
        client.send(get("/partial"))
        head = client.read_head()
        assert head.status == 200
        assert head.header("content-length") == "100"
        rest = client.read_all(3.0)
        assert rest == b"0123456789"
    settle()
    assert rec.data().count(b"GET /partial") == 1, "a response already started is never retried"


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n",
        b"SMTP ready\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
    ],
    ids=["bad-status", "not-http", "conflicting-length", "bad-header"],
)
def test_garbage_response_is_502(
    gateway_factory: Callable[..., GatewayProcess],
    upstream_factory: Callable[[Behaviour], RecordingUpstream],
    answer: bytes,
) -> None:
    rec = upstream_factory(respond_with(answer))
    gateway = gateway_factory(service_config(rec.port, retries=0))
    with WireClient(gateway.port) as client:
        assert_kong_error(client.request(get("/garbage")), 502)
        assert_kong_error(client.request(get("/garbage")), 502)
    settle()
    assert rec.connections == 2, "a connection that sent garbage is never reused"


def test_read_timeout_is_504_within_bounds(
    gateway_factory: Callable[..., GatewayProcess],
    upstream_factory: Callable[[Behaviour], RecordingUpstream],
) -> None:
    rec = upstream_factory(never_answer)
    gateway = gateway_factory(service_config(rec.port, read_timeout=300, retries=0))
    with WireClient(gateway.port) as client:
        start = time.monotonic()
        body = assert_kong_error(client.request(get("/slow")), 504)
        elapsed = time.monotonic() - start
    assert body["message"] == "The upstream server is timed out"
    assert 0.3 <= elapsed < 1.5, elapsed


def test_read_timeout_retries_an_idempotent_request(
    gateway_factory: Callable[..., GatewayProcess],
    upstream_factory: Callable[[Behaviour], RecordingUpstream],
) -> None:
    rec = upstream_factory(never_answer)
    gateway = gateway_factory(service_config(rec.port, read_timeout=200, retries=1))
    with WireClient(gateway.port) as client:
        start = time.monotonic()
        assert_kong_error(client.request(get("/slow")), 504)
        elapsed = time.monotonic() - start
        assert 0.4 <= elapsed < 1.8, elapsed
        assert_kong_error(client.request(b"POST /slow HTTP/1.1\r\n" + H + b"Content-Length: 1\r\n\r\nx"), 504)
    settle()
    assert rec.data().count(b"GET /slow") == 2
    assert rec.data().count(b"POST /slow") == 1


class BlackholeListener:
    """A listening socket whose accept queue is full: further SYNs are dropped, so a connect to it
    neither succeeds nor fails until the connector gives up."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = int(self.sock.getsockname()[1])
        self.fillers: list[socket.socket] = []
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", self.port))
            self.fillers.append(filler)
        time.sleep(0.05)

    def is_full(self) -> bool:
        probe = socket.socket()
        probe.settimeout(0.3)
        try:
            probe.connect(("127.0.0.1", self.port))
        except TimeoutError:
            return True
        finally:
            probe.close()
        return False

    def close(self) -> None:
        for sock in [*self.fillers, self.sock]:
            sock.close()


def test_connect_timeout_is_504(gateway_factory: Callable[..., GatewayProcess]) -> None:
    blackhole = BlackholeListener()
    try:
        assert blackhole.is_full(), "this kernel accepts beyond a full backlog; the setup is not valid"
        gateway = gateway_factory(service_config(blackhole.port, connect_timeout=300, retries=0))
        with WireClient(gateway.port) as client:
            start = time.monotonic()
            body = assert_kong_error(client.request(get("/connect")), 504)
            elapsed = time.monotonic() - start
        assert body["message"] == "The upstream server is timed out"
        assert 0.3 <= elapsed < 1.5, elapsed
    finally:
        blackhole.close()


def test_upstream_errors_pass_through_untouched(
    gateway_factory: Callable[..., GatewayProcess],
    upstream_factory: Callable[[Behaviour], RecordingUpstream],
) -> None:
    body = b'{"error":"boom","detail":[1,2,3]}'
    answer = (
        b"HTTP/1.1 500 Kaput\r\nContent-Type: application/problem+json\r\nX-Upstream: yes\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body) + body
    )
    rec = upstream_factory(respond_with(answer))
    gateway = gateway_factory(service_config(rec.port))
    with WireClient(gateway.port) as client:
        resp = client.request(get("/boom"))
        assert resp.status == 500
        assert resp.reason == b"Kaput"
        assert resp.body == body
        assert resp.header("content-type") == "application/problem+json"
        assert resp.header("x-upstream") == "yes"
        assert client.request(get("/again")).status == 500
    settle()
    assert rec.data().count(b"GET ") == 2, "an upstream's own 500 is an answer, not a failure to retry"


@pytest.mark.parametrize("code", [404, 500, 503])
def test_demo_status_passes_through(
    gateway_factory: Callable[..., GatewayProcess], demo: DemoUpstream, code: int
) -> None:
    gateway = gateway_factory(single_service(demo.port))
    before = demo.requests
    with WireClient(gateway.port) as client:
        resp = client.request(get(f"/status/{code}"))
    assert resp.status == code
    doc = orjson.loads(resp.body)
    assert doc["path"] == f"/status/{code}"
    assert "request_id" not in doc
    assert demo.requests == before + 1


# ---------------------------------------------------------------------------------------- retries


def test_retry_moves_to_the_other_target_when_one_refuses(
    gateway_factory: Callable[..., GatewayProcess], demo: DemoUpstream
) -> None:
    config = {
        "_format_version": "3.0",
        "upstreams": [
            {
                "name": "pair",
                "targets": [{"target": f"127.0.0.1:{free_port()}"}, {"target": f"127.0.0.1:{demo.port}"}],
            }
        ],
        "services": [{"name": "svc", "url": "http://pair", "routes": [{"name": "r", "paths": ["/"]}]}],
    }
    gateway = gateway_factory(config)
    before = demo.requests
    with WireClient(gateway.port) as client:
        for i in range(10):
            resp = client.request(get(f"/rr/{i}"))
            assert resp.status == 200, resp
            assert orjson.loads(resp.body)["path"] == f"/rr/{i}"
    assert demo.requests == before + 10


def test_non_idempotent_request_is_not_retried_after_it_was_sent(
    gateway_factory: Callable[..., GatewayProcess],
    upstream_factory: Callable[[Behaviour], RecordingUpstream],
) -> None:
    rec = upstream_factory(reset_after(b""))
    gateway = gateway_factory(service_config(rec.port, retries=2))
    with WireClient(gateway.port) as client:
        assert_kong_error(
            client.request(b"POST /order HTTP/1.1\r\n" + H + b"Content-Length: 4\r\n\r\nbody"), 502
        )
    settle()
    assert rec.data().count(b"POST /order") == 1
    with WireClient(gateway.port) as client:
        assert_kong_error(client.request(get("/order")), 502)
    settle()
    assert rec.data().count(b"GET /order") == 3, "an idempotent request is retried (retries=2)"


def test_post_is_retried_when_the_connection_was_never_made(
    gateway_factory: Callable[..., GatewayProcess], demo: DemoUpstream
) -> None:
    """Nothing reached the refusing target, so even a POST may go to the other one."""
    config = {
        "upstreams": [
            {
                "name": "pair",
                "targets": [{"target": f"127.0.0.1:{free_port()}"}, {"target": f"127.0.0.1:{demo.port}"}],
            }
        ],
        "services": [{"name": "svc", "url": "http://pair", "routes": [{"name": "r", "paths": ["/"]}]}],
    }
    gateway = gateway_factory(config)
    with WireClient(gateway.port) as client:
        for _ in range(4):
            resp = client.request(b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: 2\r\n\r\nhi")
            assert resp.status == 200
            assert orjson.loads(resp.body)["body"] == "hi"


# ---------------------------------------------------------------------------------------- headers


def _head_of(data: bytes) -> dict[str, list[str]]:
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    out: dict[str, list[str]] = {}
    for line in head:
        name, _, value = line.partition(":")
        out.setdefault(name.lower(), []).append(value.strip())
    return out


def test_hop_by_hop_request_headers_are_removed(
    gateway_factory: Callable[..., GatewayProcess],
    upstream_factory: Callable[[Behaviour], RecordingUpstream],
) -> None:
    rec = upstream_factory(respond_with(OK_RESPONSE))
    gateway = gateway_factory(single_service(rec.port))
    request = (
        b"GET /hop HTTP/1.1\r\n" + H + b"Connection: keep-alive, X-Foo, X-Forwarded-For, Via\r\n"
        b"Keep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-T\r\nProxy-Connection: keep-alive\r\n"
        b"Proxy-Authorization: Basic Zm9vOmJhcg==\r\nX-Foo: secret\r\nX-Kept: yes\r\n"
        b"X-Forwarded-For: 203.0.113.9\r\n\r\n"
    )
    with WireClient(gateway.port) as client:
        assert client.request(request).status == 200
    headers = _head_of(rec.data())
    for name in (
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "proxy-connection",
        "proxy-authorization",
        "x-foo",
    ):
        assert name not in headers, name
    assert headers["x-kept"] == ["yes"]
    # Headers the gateway itself sets are never removed by the client's Connection header.
    assert headers["x-forwarded-for"] == ["203.0.113.9, 127.0.0.1"]
    assert headers["via"] == [f"forecourt/{__version__}"]


def test_hop_by_hop_response_headers_are_removed(
    gateway_factory: Callable[..., GatewayProcess],
    upstream_factory: Callable[[Behaviour], RecordingUpstream],
) -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Bar, X-Forecourt-Request-Id, Via\r\n"
        b"Keep-Alive: timeout=5, max=100\r\nX-Bar: internal\r\nProxy-Authenticate: Basic\r\n"
        b"Upgrade: h2c\r\nTrailer: X-T\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok"
    )
    rec = upstream_factory(respond_with(answer))
    gateway = gateway_factory(single_service(rec.port))
    with WireClient(gateway.port) as client:
        resp = client.request(get("/hop"))
        assert resp.status == 200
        assert resp.body == b"ok"
        for name in ("keep-alive", "x-bar", "proxy-authenticate", "upgrade", "trailer", "connection"):
            assert not resp.has_header(name), name
        assert resp.header("x-kept") == "yes"
        assert re.fullmatch(r"[0-9a-f]{32}", resp.header("x-forecourt-request-id") or "")
        assert resp.header("via") == f"forecourt/{__version__}"
        assert client.request(get("/again")).status == 200


def test_forwarding_headers(gateway_factory: Callable[..., GatewayProcess], demo: DemoUpstream) -> None:
    gateway = gateway_factory(single_service(demo.port))
    with WireClient(gateway.port) as client:
        resp = client.request(
            b"GET /fwd/a%20b?q=1 HTTP/1.1\r\nHost: shop.example.test:8080\r\n"
            b"X-Forwarded-For: 198.51.100.7, 10.0.0.1\r\nX-Forwarded-Proto: https\r\n"
            b"X-Forwarded-Host: evil.test\r\nVia: 1.1 corp-proxy\r\n\r\n"
        )
    assert resp.status == 200
    doc = orjson.loads(resp.body)
    headers = doc["headers"]
    assert headers["x-forwarded-for"] == "198.51.100.7, 10.0.0.1, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == "shop.example.test"
    assert headers["x-forwarded-port"] == str(gateway.port)
    assert headers["x-forwarded-path"] == "/fwd/a%20b"
    assert headers["x-real-ip"] == "127.0.0.1"
    assert f"forecourt/{__version__}" in headers["via"]
    assert headers["host"] == f"127.0.0.1:{demo.port}"
    assert doc["path"] == "/fwd/a%20b"
    assert doc["query"] == "q=1"


def test_preserve_host(gateway_factory: Callable[..., GatewayProcess], demo: DemoUpstream) -> None:
    gateway = gateway_factory(single_service(demo.port, preserve_host=True))
    with WireClient(gateway.port) as client:
        resp = client.request(get("/h", host="shop.example.test:8080"))
    assert orjson.loads(resp.body)["headers"]["host"] == "shop.example.test:8080"


def test_gateway_response_headers(gateway_factory: Callable[..., GatewayProcess], demo: DemoUpstream) -> None:
    gateway = gateway_factory(single_service(demo.port))
    with WireClient(gateway.port) as client:
        first = client.request(get("/delay/120"))
        second = client.request(get("/fast"))
    for resp in (first, second):
        assert resp.status == 200
        assert resp.header_all("via") == [f"forecourt/{__version__}"]
        assert re.fullmatch(r"\d+", resp.header("x-forecourt-upstream-latency") or "")
        assert re.fullmatch(r"\d+", resp.header("x-forecourt-proxy-latency") or "")
        assert re.fullmatch(r"[0-9a-f]{32}", resp.header("x-forecourt-request-id") or "")
    assert int(first.header("x-forecourt-upstream-latency") or 0) >= 100  # the upstream waited 120 ms
    assert first.header("x-forecourt-request-id") != second.header("x-forecourt-request-id")


def test_connection_naming_content_length_keeps_the_response_framed(
    gateway_factory: Callable[..., GatewayProcess],
    upstream_factory: Callable[[Behaviour], RecordingUpstream],
) -> None:
    rec = upstream_factory(
        respond_with(b"HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 2\r\n\r\nok")
    )
    gateway = gateway_factory(single_service(rec.port))
    with WireClient(gateway.port) as client:
        resp = client.request(get("/cl"))
        assert resp.header("content-length") == "2"
        assert resp.body == b"ok"
        assert client.request(get("/cl")).body == b"ok"


def _in_pieces(*pieces: bytes, pause: float = 0.05) -> Behaviour:
    """Answer each request with `pieces`, written separately with a pause between them."""

    def behave(sock: socket.socket, received: bytes) -> bool:
        if b"\r\n\r\n" not in received:
            return False
        for i, piece in enumerate(pieces):
            if i:
                time.sleep(pause)
            sock.sendall(piece)
        return True

    return behave


@pytest.mark.parametrize(
    ("pieces", "expect"),
    [
        # The usual head: passed through as received, `Connection` cut out, our headers added.
        ((b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nok",), {}),
        # Connection first, last, or absent; a head that arrives in several reads.
        ((b"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok",), {}),
        ((b"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nok",), {}),
        ((b"HTTP/1.1 200 OK\r\nX-A", b": 1\r\nContent-Le", b"ngth: 2\r\n\r", b"\nok"), {}),
        # An interim 103 is not forwarded; the final head that follows it is.
        (
            (
                b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nok",
            ),
            {},
        ),
        # An HTTP/1.0 answer gets an HTTP/1.1 status line, its reason phrase kept.
        (
            (b"HTTP/1.0 200 Fine\r\nX-A: 1\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok",),
            {"reason": "Fine"},
        ),
        # The upstream's Via is extended, not replaced.
        (
            (b"HTTP/1.1 200 OK\r\nVia: 1.1 cache\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nok",),
            {"via": "1.1 cache, "},
        ),
    ],
)
def test_response_heads_are_forwarded_with_our_edits(
    gateway_factory: Callable[..., GatewayProcess],
    upstream_factory: Callable[[Behaviour], RecordingUpstream],
    pieces: tuple[bytes, ...],
    expect: dict[str, str],
) -> None:
    rec = upstream_factory(_in_pieces(*pieces))
    gateway = gateway_factory(single_service(rec.port))
    with WireClient(gateway.port) as client:
        for _ in range(2):  # the second one on the same (pooled) upstream connection
            resp = client.request(get("/head"))
            assert resp.status == 200
            assert resp.reason == expect.get("reason", "OK").encode()
            assert resp.body == b"ok"
            assert resp.header_all("x-a") == ["1"]
            assert resp.header_all("content-length") == ["2"]
            assert not resp.has_header("connection")
            assert not resp.has_header("link")
            assert resp.header_all("via") == [expect.get("via", "") + f"forecourt/{__version__}"]
            assert re.fullmatch(r"[0-9a-f]{32}", resp.header("x-forecourt-request-id") or "")


def test_a_close_delimited_answer_is_rechunked_for_the_client(
    gateway_factory: Callable[..., GatewayProcess],
    upstream_factory: Callable[[Behaviour], RecordingUpstream],
) -> None:
    def behave(sock: socket.socket, received: bytes) -> bool:
        if b"\r\n\r\n" not in received:
            return False
        sock.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nX-A: 1\r\n\r\nto the end")
        sock.shutdown(socket.SHUT_WR)
        return True

    rec = upstream_factory(behave)
    gateway = gateway_factory(single_service(rec.port))
    with WireClient(gateway.port) as client:
        resp = client.request(get("/eof"))
        assert resp.status == 200
        assert resp.header("transfer-encoding") == "chunked"
        assert resp.body == b"to the end"
        assert not resp.has_header("connection")
        assert client.request(get("/again")).status == 200  # the client connection stays usable


def test_an_endless_response_head_is_502(
    gateway_factory: Callable[..., GatewayProcess],
    upstream_factory: Callable[[Behaviour], RecordingUpstream],
) -> None:
    huge = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-Filler-%d: %s\r\n" % (i, b"v" * 100) for i in range(1000))
    rec = upstream_factory(_in_pieces(huge[:40_000], huge[40_000:], pause=0.05))
    gateway = gateway_factory(single_service(rec.port))
    with WireClient(gateway.port) as client:
        assert_kong_error(client.request(get("/huge")), 502)
