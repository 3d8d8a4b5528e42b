"""The client-facing HTTP server over real sockets: connection reuse, pipelining, streaming in both
directions, interim responses, HEAD, graceful close, and the limits and timeouts that protect it."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from tests.conftest import single_service
from tests.support.gateway import GatewayProcess
from tests.support.upstreams import (
    OK_RESPONSE,
    DemoUpstream,
    RecordingUpstream,
    respond_when_complete,
    settle,
)
from tests.support.wire import WireClient, get

H = b"Host: example.test\r\n"


@pytest.fixture(scope="module")
def demo() -> Iterator[DemoUpstream]:
    upstream = DemoUpstream("demo").start()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def recorder() -> Iterator[RecordingUpstream]:
    upstream = RecordingUpstream(respond_when_complete(OK_RESPONSE)).start()
    yield upstream
    upstream.stop()


@pytest.fixture
def recording(recorder: RecordingUpstream) -> RecordingUpstream:
    recorder.clear()
    return recorder


@pytest.fixture(scope="module")
def demo_gateway(module_gateway_factory: Callable[..., GatewayProcess], demo: DemoUpstream) -> GatewayProcess:
    """Two routes to the demo service: buffered (Kong's default) and `request_buffering: false`."""
    config = single_service(demo.port)
    config["services"][0]["routes"].append(
        {"name": "streamed", "paths": ["/streamed"], "request_buffering": False, "strip_path": False}
    )
    return module_gateway_factory(config)


@pytest.fixture(scope="module")
def recording_gateway(
    module_gateway_factory: Callable[..., GatewayProcess], recorder: RecordingUpstream
) -> GatewayProcess:
    config = single_service(recorder.port)
    config["services"][0]["routes"].append(
        {"name": "streamed", "paths": ["/streamed"], "request_buffering": False, "strip_path": False}
    )
    return module_gateway_factory(config)


def echo(resp_body: bytes) -> dict[str, object]:
    doc = orjson.loads(resp_body)
    assert isinstance(doc, dict)
    return doc


def wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# ---------------------------------------------------------------------------------------- keep-alive


def test_keep_alive_reuses_client_and_upstream_connections(
    gateway_factory: Callable[..., GatewayProcess],
) -> None:
    recording = RecordingUpstream().start()
    try:
        gateway = gateway_factory(single_service(recording.port))
        with WireClient(gateway.port) as client:
            for i in range(4):
                resp = client.request(get(f"/ka/{i}"))
                assert resp.status == 200
                assert resp.body == b'{"ok":true}'
                assert resp.header("connection") is None
        # A new client connection is served over the same pooled upstream connection.
        with WireClient(gateway.port) as client:
            assert client.request(get("/ka/new-client", extra="Connection: close\r\n")).status == 200
            assert client.read_all(2.0) == b""
        settle()
        seen = recording.data()
        assert recording.connections == 1, "the pooled upstream connection must be reused"
    finally:
        recording.stop()
    assert [line for line in seen.split(b"\r\n") if line.startswith(b"GET ")] == [
        *(f"GET /ka/{i} HTTP/1.1".encode() for i in range(4)),
        b"GET /ka/new-client HTTP/1.1",
    ]
    assert b"connection: close" not in seen.lower(), "the client's Connection header is hop-by-hop"


def test_http_1_0_keep_alive_is_honoured(demo_gateway: GatewayProcess) -> None:
    with WireClient(demo_gateway.port) as client:
        first = client.request(b"GET /one HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert first.status == 200
        assert first.header("connection") == "keep-alive"
        assert echo(first.body)["path"] == "/one"
        second = client.request(b"GET /two HTTP/1.0\r\n\r\n")
        assert second.status == 200
        assert second.header("connection") == "close"
        assert echo(second.body)["path"] == "/two"
        assert client.read_all(2.0) == b""


# ---------------------------------------------------------------------------------------- pipelining


def test_pipelined_requests_answered_in_order(demo_gateway: GatewayProcess) -> None:
    with WireClient(demo_gateway.port) as client:
        client.send(get("/p/a") + get("/p/b") + get("/p/c"))
        paths = [echo(client.read_response().body)["path"] for _ in range(3)]
    assert paths == ["/p/a", "/p/b", "/p/c"]


def test_pipelined_slow_request_does_not_let_later_answers_overtake(demo_gateway: GatewayProcess) -> None:
    with WireClient(demo_gateway.port) as client:
        client.send(
            get("/delay/200")
            + b"POST /p/post HTTP/1.1\r\n"
            + H
            + b"Content-Length: 3\r\n\r\nabc"
            + get("/p/last")
        )
        first, second, third = (client.read_response() for _ in range(3))
    assert echo(first.body)["path"] == "/delay/200"
    assert echo(second.body)["path"] == "/p/post"
    assert echo(second.body)["body"] == "abc"
    assert echo(third.body)["path"] == "/p/last"


def test_many_pipelined_requests_beyond_the_queue_limit(demo_gateway: GatewayProcess) -> None:
    """More requests than the pipelining queue holds: reading pauses and resumes, none is lost."""
    with WireClient(demo_gateway.port) as client:
        client.send(b"".join(get(f"/many/{i}") for i in range(60)))
        paths = [echo(client.read_response().body)["path"] for _ in range(60)]
    assert paths == [f"/many/{i}" for i in range(60)]


# ---------------------------------------------------------------------------------------- streaming


def _process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (the supervisor and the workers it forked)."""
    pids = [pid]
    for tid in Path(f"/proc/{pid}/task").iterdir():
        children = (tid / "children").read_text().split()
        for child in children:
            pids.extend(_process_tree(int(child)))
    return pids


def _memory_kib(pid: int, field: str) -> int:
    """Sum of `field` (VmRSS, VmHWM) over the gateway's processes."""
    total = 0
    for member in _process_tree(pid):
        for line in Path(f"/proc/{member}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                total += int(line.split()[1])
    return total


def test_large_response_streams_with_bounded_memory(demo_gateway: GatewayProcess) -> None:
    """50 MB through a client that stalls first: backpressure must keep the gateway's memory flat."""
    assert demo_gateway.proc is not None
    pid = demo_gateway.proc.pid
    size = 50_000_000
    with WireClient(demo_gateway.port, rcvbuf=64 * 1024, timeout=20) as client:
        client.request(get("/warmup"))
        peak_before = _memory_kib(pid, "VmHWM")
        client.send(get(f"/bytes/{size}"))
        head = client.read_head()
        assert head.status == 200
        assert head.header("content-length") == str(size)
        time.sleep(1.0)  # the upstream could have sent everything by now; the gateway must not hold it
        stalled_rss = _memory_kib(pid, "VmRSS")
        received = len(client.buffer)
        client.buffer = b""
        while received < size:
            chunk = client.sock.recv(1024 * 1024)
            assert chunk, f"connection closed after {received} bytes"
            received += len(chunk)
        assert received == size
        peak_after = _memory_kib(pid, "VmHWM")
        # The connection is still usable afterwards.
        assert client.request(get("/after")).status == 200
    growth_mib = (peak_after - peak_before) / 1024
    assert growth_mib < 25, f"gateway peak RSS grew by {growth_mib:.1f} MiB while streaming 50 MB"
    assert (stalled_rss - peak_before) / 1024 < 25


def test_chunked_response_rechunked_for_http_1_1(demo_gateway: GatewayProcess) -> None:
    with WireClient(demo_gateway.port) as client:
        resp = client.request(get("/chunked/200000"))
        assert resp.status == 200
        assert resp.framing == "chunked"
        assert resp.header("content-length") is None
        assert resp.body == b"x" * 200000
        assert resp.raw_body.endswith(b"0\r\n\r\n")
        # Still a usable keep-alive connection after the terminating chunk.
        assert client.request(get("/again")).status == 200


def test_chunked_response_close_delimited_for_http_1_0(demo_gateway: GatewayProcess) -> None:
    with WireClient(demo_gateway.port) as client:
        client.send(b"GET /chunked/200000 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        resp = client.read_response()
    assert resp.status == 200
    assert resp.framing == "close"
    assert resp.header("transfer-encoding") is None
    assert resp.header("connection") == "close"
    assert resp.body == b"x" * 200000


def test_chunked_upload_is_buffered_and_sent_with_content_length(
    recording_gateway: GatewayProcess, recording: RecordingUpstream
) -> None:
    with WireClient(recording_gateway.port) as client:
        client.send(b"POST /upload HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        time.sleep(0.3)
        assert recording.total_bytes == 0, "a buffered body is not forwarded before it is complete"
        resp = client.request(b"6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
        assert resp.status == 200
    head, _, body = recording.data().partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    assert b"content-length: 11" in lines
    assert not any(line.startswith(b"transfer-encoding") for line in lines)
    assert body == b"hello world"


def _answer_after_last_chunk(sock: socket.socket, received: bytes) -> bool:
    if received.endswith(b"0\r\n\r\n") or (b"\r\n\r\n" in received and b"chunked" not in received.lower()):
        sock.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
        return True
    return False


def test_unbuffered_upload_streams_to_the_upstream(gateway_factory: Callable[..., GatewayProcess]) -> None:
    recording = RecordingUpstream(_answer_after_last_chunk).start()
    try:
        config = single_service(recording.port, request_buffering=False)
        gateway = gateway_factory(config)
        with WireClient(gateway.port) as client:
            client.send(b"POST /up HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            assert wait_until(lambda: b"hello" in recording.data()), "first chunk must be forwarded at once"
            client.send(b"6\r\n world\r\n")
            assert wait_until(lambda: b" world" in recording.data())
            resp = client.request(b"0\r\n\r\n")
            assert resp.status == 201
            assert resp.body == b"ok"
        head, _, body = recording.data().partition(b"\r\n\r\n")
        assert b"transfer-encoding: chunked" in head.lower().split(b"\r\n")
        assert b"content-length" not in head.lower()
        assert body == b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    finally:
        recording.stop()


def test_unbuffered_upload_with_content_length(
    recording_gateway: GatewayProcess, recording: RecordingUpstream
) -> None:
    with WireClient(recording_gateway.port) as client:
        client.send(b"PUT /streamed/cl HTTP/1.1\r\n" + H + b"Content-Length: 10\r\n\r\nhello")
        assert wait_until(lambda: b"hello" in recording.data())
        resp = client.request(b"world")
        assert resp.status == 200
    head, _, body = recording.data().partition(b"\r\n\r\n")
    assert b"content-length: 10" in head.lower().split(b"\r\n")
    assert body == b"helloworld"


@pytest.mark.parametrize("path", ["/expect", "/streamed/expect"], ids=["buffered", "unbuffered"])
def test_expect_100_continue(demo_gateway: GatewayProcess, path: str) -> None:
    with WireClient(demo_gateway.port) as client:
        client.send(
            f"POST {path} HTTP/1.1\r\n".encode() + H + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n"
        )
        interim = client.read_head()
        assert interim.status == 100
        resp = client.request(b"hello")
        assert resp.status == 200
        doc = echo(resp.body)
        assert doc["body"] == "hello"
        headers = doc["headers"]
        assert isinstance(headers, dict)
        assert "expect" not in headers


def test_expect_100_continue_body_sent_anyway(demo_gateway: GatewayProcess) -> None:
    """A client that does not wait for 100 Continue gets just the final response."""
    with WireClient(demo_gateway.port) as client:
        resp = client.request(
            b"POST /expect HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello"
        )
        assert resp.status == 200
        assert echo(resp.body)["body"] == "hello"
        assert client.request(get("/next")).status == 200


def test_unsupported_expectation_is_417(
    recording_gateway: GatewayProcess, recording: RecordingUpstream
) -> None:
    with WireClient(recording_gateway.port) as client:
        resp = client.request(b"POST /x HTTP/1.1\r\n" + H + b"Expect: teapot\r\nContent-Length: 1\r\n\r\na")
        assert resp.status == 417
        assert client.read_all(2.0) == b""
    settle()
    assert recording.total_bytes == 0


def test_head_keeps_content_length_sends_no_body_and_reuses_connection(demo_gateway: GatewayProcess) -> None:
    with WireClient(demo_gateway.port) as client:
        resp = client.request(b"HEAD /bytes/1000 HTTP/1.1\r\n" + H + b"\r\n", head_request=True)
        assert resp.status == 200
        assert resp.header("content-length") == "1000"
        head_json = client.request(b"HEAD /json HTTP/1.1\r\n" + H + b"\r\n", head_request=True)
        assert head_json.status == 200
        assert int(head_json.header("content-length") or 0) > 0
        # No stray body bytes: the next response parses cleanly.
        nxt = client.request(get("/after-head"))
        assert nxt.status == 200
        assert echo(nxt.body)["path"] == "/after-head"


def test_head_to_chunked_resource(demo_gateway: GatewayProcess) -> None:
    with WireClient(demo_gateway.port) as client:
        resp = client.request(b"HEAD /chunked/1000 HTTP/1.1\r\n" + H + b"\r\n", head_request=True)
        assert resp.status == 200
        nxt = client.request(get("/after-chunked-head"))
        assert echo(nxt.body)["path"] == "/after-chunked-head"


def test_connection_close_is_honoured(demo_gateway: GatewayProcess) -> None:
    with WireClient(demo_gateway.port) as client:
        resp = client.request(get("/bye", extra="Connection: close\r\n"))
        assert resp.status == 200
        assert resp.header("connection") == "close"
        assert client.read_all(2.0) == b""


def test_upstream_connection_close_does_not_close_the_client(demo_gateway: GatewayProcess) -> None:
    with WireClient(demo_gateway.port) as client:
        resp = client.request(get("/close"))
        assert resp.status == 200
        assert resp.header("connection") is None
        assert client.request(get("/still-open")).status == 200


def test_sigterm_completes_in_flight_request(
    gateway_factory: Callable[..., GatewayProcess], demo: DemoUpstream
) -> None:
    gateway = gateway_factory(single_service(demo.port))
    with WireClient(gateway.port, timeout=10) as client:
        client.send(get("/delay/500"))
        time.sleep(0.15)
        gateway.signal(signal.SIGTERM)
        resp = client.read_response()
        assert resp.status == 200
        assert echo(resp.body)["path"] == "/delay/500"
    assert gateway.proc is not None
    assert gateway.proc.wait(10) == 0


# ---------------------------------------------------------------------------------------- limits

LIMIT_FLAGS = (
    "--header-timeout",
    "0.5",
    "--body-timeout",
    "0.5",
    "--keepalive-timeout",
    "0.6",
    "--max-body-size",
    "1000",
    "--max-request-line",
    "256",
    "--max-header-size",
    "1k",
    "--max-headers",
    "10",
)


@pytest.fixture(scope="module")
def limited(
    module_gateway_factory: Callable[..., GatewayProcess], recorder: RecordingUpstream
) -> GatewayProcess:
    return module_gateway_factory(single_service(recorder.port), *LIMIT_FLAGS)


def _refused(gateway: GatewayProcess, data: bytes, status: int, recording: RecordingUpstream) -> None:
    with WireClient(gateway.port) as client:
        client.send(data)
        resp = client.read_response()
        assert resp.status == status, resp
        assert resp.header("connection") == "close"
        assert client.read_all(2.0) == b""
    settle(0.15)
    assert recording.total_bytes == 0, recording.data()


def _accepted(gateway: GatewayProcess, data: bytes) -> None:
    with WireClient(gateway.port) as client:
        assert client.request(data).status == 200


def test_uri_too_long_is_414(limited: GatewayProcess, recording: RecordingUpstream) -> None:
    _accepted(limited, get("/" + "a" * 200))
    recording.clear()
    _refused(limited, get("/" + "a" * 300), 414, recording)


def test_very_long_request_line_is_414(limited: GatewayProcess, recording: RecordingUpstream) -> None:
    _refused(limited, get("/" + "a" * 20000), 414, recording)


def test_request_line_without_end_is_414(limited: GatewayProcess, recording: RecordingUpstream) -> None:
    """No CRLF ever comes: the gateway must not buffer without bound."""
    _refused(limited, b"GET /" + b"a" * 10000, 414, recording)


def test_too_many_headers_is_431(limited: GatewayProcess, recording: RecordingUpstream) -> None:
    nine = "".join(f"X-H{i}: v\r\n" for i in range(9))
    _accepted(limited, get("/ok", extra=nine))
    recording.clear()
    ten = "".join(f"X-H{i}: v\r\n" for i in range(10))
    _refused(limited, get("/many", extra=ten), 431, recording)


def test_header_block_too_large_is_431(limited: GatewayProcess, recording: RecordingUpstream) -> None:
    _refused(limited, get("/big", extra="X-Big: " + "b" * 1100 + "\r\n"), 431, recording)


def test_header_line_without_end_is_431(limited: GatewayProcess, recording: RecordingUpstream) -> None:
    """A header line that never ends, sent over several reads: refused once it passes the limit."""
    with WireClient(limited.port) as client:
        client.send(get("/big")[:-2] + b"X-Big: ")
        for _ in range(5):
            time.sleep(0.05)
            client.send(b"b" * 800)  # never refused: the gateway drains input after answering
        resp = client.read_response()
        assert resp.status == 431
        assert client.read_all(2.0) == b""
    settle(0.15)
    assert recording.total_bytes == 0


def test_large_body_in_the_first_read_is_not_mistaken_for_a_long_head(demo_gateway: GatewayProcess) -> None:
    """Head and a 200 kB body in one write: the body must not count against the head limits."""
    body = b"b" * 200_000
    with WireClient(demo_gateway.port) as client:
        client.send(
            b"POST /bulk HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % len(body) + body + get("/next")
        )
        resp = client.read_response()
        assert resp.status == 200
        assert echo(resp.body)["body"] == body.decode()
        assert echo(client.read_response().body)["path"] == "/next"


def test_content_length_over_limit_is_413(limited: GatewayProcess, recording: RecordingUpstream) -> None:
    _accepted(limited, b"POST /ok HTTP/1.1\r\n" + H + b"Content-Length: 1000\r\n\r\n" + b"a" * 1000)
    recording.clear()
    # Answered on the head alone: the client need not send the body.
    _refused(limited, b"POST /big HTTP/1.1\r\n" + H + b"Content-Length: 1001\r\n\r\n", 413, recording)


def test_chunked_body_growing_past_limit_is_413(
    limited: GatewayProcess, recording: RecordingUpstream
) -> None:
    chunk = b"190\r\n" + b"c" * 400 + b"\r\n"
    _refused(
        limited,
        b"POST /big HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" + chunk * 3 + b"0\r\n\r\n",
        413,
        recording,
    )


def test_slowloris_headers_get_408(limited: GatewayProcess, recording: RecordingUpstream) -> None:
    with WireClient(limited.port) as client:
        start = time.monotonic()
        client.send(b"GET /slow HTTP/1.1\r\nHost: example.test\r\nX-Slow: ")
        answer = b""
        for _ in range(30):  # one byte every 100 ms: each arrives well within any per-read timeout
            time.sleep(0.1)
            try:
                client.send(b"a")
            except (BrokenPipeError, ConnectionResetError):
                break
            if client.closed_within(0.001) or client.buffer:
                break
        answer = client.buffer + client.read_all(3.0)
        elapsed = time.monotonic() - start
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"Connection: close" in answer
    assert 0.45 <= elapsed <= 2.5, elapsed
    settle(0.1)
    assert recording.total_bytes == 0


def test_silent_connection_closed_after_header_timeout(limited: GatewayProcess) -> None:
    with WireClient(limited.port) as client:
        start = time.monotonic()
        assert client.read_all(3.0) == b""
        assert 0.45 <= time.monotonic() - start <= 2.5


def test_slow_body_gets_408(limited: GatewayProcess, recording: RecordingUpstream) -> None:
    with WireClient(limited.port) as client:
        start = time.monotonic()
        client.send(b"POST /slow HTTP/1.1\r\n" + H + b"Content-Length: 10\r\n\r\nhello")
        resp = client.read_response()
        assert resp.status == 408
        assert 0.45 <= time.monotonic() - start <= 2.5
        assert client.read_all(2.0) == b""
    settle(0.1)
    assert recording.total_bytes == 0


def test_keep_alive_idle_connection_is_closed(limited: GatewayProcess) -> None:
    with WireClient(limited.port) as client:
        assert client.request(get("/one")).status == 200
        time.sleep(0.3)
        assert client.request(get("/two")).status == 200, "still open within the idle timeout"
        idle_from = time.monotonic()
        assert client.read_all(3.0) == b""
        assert 0.55 <= time.monotonic() - idle_from <= 2.5


def test_limits_default_without_flags(demo_gateway: GatewayProcess) -> None:
    """Without flags the generous defaults apply: a 300-byte target and 20 headers are fine."""
    extra = "".join(f"X-H{i}: v\r\n" for i in range(20))
    with WireClient(demo_gateway.port) as client:
        assert client.request(get("/" + "a" * 300, extra=extra)).status == 200


def test_413_reaches_a_client_still_sending_its_body(
    limited: GatewayProcess, recording: RecordingUpstream
) -> None:
    """The gateway answers on the head; the client keeps uploading and must still read the 413."""
    with WireClient(limited.port) as client:
        client.send(b"POST /upload HTTP/1.1\r\n" + H + b"Content-Length: 200000\r\n\r\n")
        for _ in range(20):
            client.send(b"u" * 10_000)
            time.sleep(0.005)
        resp = client.read_response()
        assert resp.status == 413
        assert resp.header("connection") == "close"
        assert client.read_all(3.0) == b""
    settle(0.1)
    assert recording.total_bytes == 0


def test_expect_100_continue_with_too_large_body_gets_413_without_100(
    limited: GatewayProcess, recording: RecordingUpstream
) -> None:
    with WireClient(limited.port) as client:
        client.send(b"POST /big HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 5000\r\n\r\n")
        resp = client.read_response()
        assert resp.status == 413
        assert resp.interim == []
        assert client.read_all(2.0) == b""
    settle(0.1)
    assert recording.total_bytes == 0


def test_requests_after_connection_close_are_ignored(
    recording_gateway: GatewayProcess, recording: RecordingUpstream
) -> None:
    with WireClient(recording_gateway.port) as client:
        client.send(get("/last", extra="Connection: close\r\n") + get("/ignored"))
        assert client.read_response().status == 200
        assert client.read_all(2.0) == b""
    settle()
    assert b"/last" in recording.data()
    assert b"/ignored" not in recording.data()


# ---------------------------------------------------------------------------------------- response framing


def _scripted(response: bytes, *, close: bool = False) -> Callable[[socket.socket, bytes], bool]:
    def behave(sock: socket.socket, received: bytes) -> bool:
        if b"\r\n\r\n" not in received:
            return False
        sock.sendall(response)
        if close:
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        return True

    return behave


def test_close_delimited_upstream_body_is_rechunked(gateway_factory: Callable[..., GatewayProcess]) -> None:
    rec = RecordingUpstream(
        _scripted(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello, world", close=True)
    )
    rec.start()
    try:
        gateway = gateway_factory(single_service(rec.port))
        with WireClient(gateway.port) as client:
            resp = client.request(get("/eof"))
            assert resp.status == 200
            assert resp.framing == "chunked"
            assert resp.body == b"hello, world"
            assert client.request(get("/eof")).body == b"hello, world", "client connection stays usable"
        with WireClient(gateway.port) as client:
            client.send(b"GET /eof HTTP/1.0\r\n\r\n")
            old = client.read_response()
            assert old.framing == "close"
            assert old.body == b"hello, world"
    finally:
        rec.stop()


def test_interim_upstream_responses_are_not_forwarded(gateway_factory: Callable[..., GatewayProcess]) -> None:
    rec = RecordingUpstream(
        _scripted(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        )
    ).start()
    try:
        gateway = gateway_factory(single_service(rec.port))
        with WireClient(gateway.port) as client:
            resp = client.request(get("/interim"))
            assert resp.status == 200
            assert resp.interim == []
            assert resp.body == b"ok"
            assert client.request(get("/interim")).body == b"ok"
    finally:
        rec.stop()


@pytest.mark.parametrize("code", [204, 304])
def test_bodiless_statuses_get_no_framing(demo_gateway: GatewayProcess, code: int) -> None:
    with WireClient(demo_gateway.port) as client:
        resp = client.request(get(f"/status/{code}"))
        assert resp.status == code
        assert resp.header("transfer-encoding") is None
        assert echo(client.request(get("/after")).body)["path"] == "/after"


def test_upstream_closing_idle_connections_costs_no_request(
    gateway_factory: Callable[..., GatewayProcess],
) -> None:
    """An upstream that closes each connection after answering (without saying so): the gateway
    must notice the closed pooled connection and not send the next request, even a POST, into it."""
    rec = RecordingUpstream(_scripted(OK_RESPONSE, close=True)).start()
    try:
        gateway = gateway_factory(single_service(rec.port, name="r"))
        with WireClient(gateway.port) as client:
            for i in range(3):
                resp = client.request(b"POST /p%d HTTP/1.1\r\n" % i + H + b"Content-Length: 1\r\n\r\nx")
                assert resp.status == 200, resp
                time.sleep(0.3)  # time for the upstream's FIN to reach the idle pooled connection
        settle()
        assert rec.connections == 3
    finally:
        rec.stop()
