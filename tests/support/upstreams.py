"""Real upstreams on 127.0.0.1 for tests.

* `DemoUpstream` runs the package's demo service (JSON echo of what it received) on its own event
  loop in a thread.
* `RecordingUpstream` is a raw TCP server that records every byte it receives and answers with a
  scripted behaviour (a fixed response, garbage, a reset, silence), so a test can assert exactly
  what reached the upstream, including "nothing at all".
"""

from __future__ import annotations

import asyncio
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable

from forecourt.demo.service import DemoService
from tests.support.net import free_port, wait_for_port

OK_RESPONSE = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'


class DemoUpstream:
    """The demo JSON echo service, on a free port, in a background thread."""

    def __init__(
        self,
        name: str = "upstream",
        host: str = "127.0.0.1",
        port: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.name = name
        self.ssl_context = ssl_context
        self.host = host
        self.port = port or free_port()
        self.service = DemoService(name)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = threading.Event()
        self._server: asyncio.Server | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        serving = self.service.serve(self.host, self.port, self.ssl_context)
        self._server = self._loop.run_until_complete(serving)
        self._started.set()
        self._loop.run_forever()
        self._server.close()
        # One more turn first: a connection accepted just before the stop has its protocol made
        # but `connection_made` still queued; closing before it runs would leave its socket open.
        self._loop.run_until_complete(asyncio.sleep(0))
        self.service.close_connections()
        self._loop.run_until_complete(self._server.wait_closed())
        self._loop.run_until_complete(asyncio.sleep(0.01))
        self.service.close_connections()  # any that arrived during the wait
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        if pending:
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    def start(self) -> DemoUpstream:
        self._thread.start()
        self._started.wait(5)
        wait_for_port(self.port, host=self.host)
        return self

    @property
    def requests(self) -> int:
        return self.service.requests

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)


Behaviour = Callable[[socket.socket, bytes], bool]


def respond_with(response: bytes) -> Behaviour:
    """Answer each complete request head with `response`; keep the connection."""

    def behave(sock: socket.socket, received: bytes) -> bool:
        if b"\r\n\r\n" in received:
            sock.sendall(response)
            return True
        return False

    return behave


def request_complete(received: bytes) -> int:
    """Length of the first complete request in `received` (head and body), or 0 if incomplete."""
    end = received.find(b"\r\n\r\n")
    if end < 0:
        return 0
    head = received[:end].lower()
    body_at = end + 4
    if b"transfer-encoding: chunked" in head:
        last = received.find(b"\r\n0\r\n\r\n", body_at - 2)
        return last + 7 if last >= 0 else 0
    for line in head.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            size = body_at + int(line.split(b":", 1)[1])
            return size if len(received) >= size else 0
    return body_at


def respond_when_complete(response: bytes) -> Behaviour:
    """Answer each request with `response` once its whole body (length or chunked) arrived."""

    def behave(sock: socket.socket, received: bytes) -> bool:
        if request_complete(received):
            sock.sendall(response)
            return True
        return False

    return behave


class RecordingUpstream:
    """Records every byte received; `behaviour(sock, bytes_so_far)` returns True once it answered."""

    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.port = free_port()
        self.behaviour = behaviour or respond_with(OK_RESPONSE)
        self.received: list[bytes] = []
        self.connections = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sock: socket.socket = self.request
                sock.settimeout(10)
                with outer._lock:
                    outer.connections += 1
                buffer = b""
                while True:
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    with outer._lock:
                        outer.received.append(data)
                    buffer += data
                    if outer.behaviour(sock, buffer):
                        buffer = b""

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self._server = Server(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> RecordingUpstream:
        self._thread.start()
        wait_for_port(self.port)
        # The readiness probe does not count; its handler runs on a thread of its own, so wait for
        # it to be counted before resetting.
        deadline = time.monotonic() + 2.0
        while self.connections == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        with self._lock:
            self.connections = 0
        return self

    @property
    def total_bytes(self) -> int:
        with self._lock:
            return sum(len(d) for d in self.received)

    def data(self) -> bytes:
        with self._lock:
            return b"".join(self.received)

    def clear(self) -> None:
        """Forget what was received so far (for upstreams shared between test cases)."""
        with self._lock:
            self.received.clear()
            self.connections = 0

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def settle(seconds: float = 0.2) -> None:
    """Give in-flight bytes time to arrive before asserting that none did."""
    time.sleep(seconds)
