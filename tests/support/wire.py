"""A raw HTTP/1.x client for wire tests: exact bytes out, responses parsed by hand.

HTTP client libraries normalise what they send and hide how a response was framed; these helpers
send exactly the bytes a test wrote and keep the framing (`Content-Length`, chunked, or
close-delimited) visible, so a test can assert on both.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field


@dataclass
class WireResponse:
    """One response as it came off the socket."""

    version: bytes
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    framing: str = "none"  # "length", "chunked", "close" or "none" (no body allowed)
    raw_body: bytes = b""
    interim: list[int] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), decoded, or None."""
        key = name.lower().encode()
        for n, v in self.headers:
            if n.lower() == key:
                return v.decode("latin-1")
        return None

    def header_all(self, name: str) -> list[str]:
        key = name.lower().encode()
        return [v.decode("latin-1") for n, v in self.headers if n.lower() == key]

    def has_header(self, name: str) -> bool:
        return self.header(name) is not None


class ConnectionClosed(Exception):
    """The server closed the connection before a complete response arrived."""


class WireClient:
    """One client connection to 127.0.0.1:`port`."""

    def __init__(self, port: int, *, timeout: float = 5.0, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buffer = b""
        self.eof = False

    def __enter__(self) -> WireClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, size: int = 65536) -> bool:
        """Read more into the buffer; False on EOF or reset."""
        if self.eof:
            return False
        try:
            chunk = self.sock.recv(size)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buffer += chunk
        return True

    def _read_until(self, marker: bytes) -> bytes:
        while True:
            at = self.buffer.find(marker)
            if at >= 0:
                data = self.buffer[: at + len(marker)]
                self.buffer = self.buffer[at + len(marker) :]
                return data
            if not self._fill():
                raise ConnectionClosed(f"closed while waiting for {marker!r}; got {self.buffer[:200]!r}")

    def _read_exact(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._fill():
                raise ConnectionClosed(f"closed with {len(self.buffer)} of {size} bytes")
        data = self.buffer[:size]
        self.buffer = self.buffer[size:]
        return data

    def read_head(self) -> WireResponse:
        """Read one response head (including interim 1xx heads, which are returned as they come)."""
        head = self._read_until(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        code, _, reason = rest.partition(b" ")
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.append((name, value.strip()))
        return WireResponse(version, int(code), reason, headers)

    def read_response(self, *, head_request: bool = False) -> WireResponse:
        """Read one final response (skipping interim ones) with its body, framed as the server said."""
        interim = []
        resp = self.read_head()
        while 100 <= resp.status < 200:
            interim.append(resp.status)
            resp = self.read_head()
        resp.interim = interim
        if head_request or resp.status in (204, 304):
            return resp
        te = resp.header("transfer-encoding")
        length = resp.header("content-length")
        if te is not None:
            assert te.lower() == "chunked", te
            resp.framing = "chunked"
            raw = bytearray()
            body = bytearray()
            while True:
                size_line = self._read_until(b"\r\n")
                raw += size_line
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    raw += self._read_until(b"\r\n")
                    break
                data = self._read_exact(size + 2)
                assert data.endswith(b"\r\n"), data[-10:]
                raw += data
                body += data[:-2]
            resp.body = bytes(body)
            resp.raw_body = bytes(raw)
        elif length is not None:
            resp.framing = "length"
            resp.body = resp.raw_body = self._read_exact(int(length))
        else:
            resp.framing = "close"
            while self._fill():
                pass
            resp.body = resp.raw_body = self.buffer
            self.buffer = b""
        return resp

    def request(self, data: bytes, *, head_request: bool = False) -> WireResponse:
        self.send(data)
        return self.read_response(head_request=head_request)

    def closed_within(self, seconds: float) -> bool:
        """True when the server closes the connection (EOF or reset) within `seconds`, reading and
        discarding nothing: any byte received first makes it False."""
        if self.buffer:
            return False
        self.sock.settimeout(seconds)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        if chunk:
            self.buffer += chunk
            return False
        self.eof = True
        return True

    def read_all(self, timeout: float = 5.0) -> bytes:
        """Everything until the server closes; raises TimeoutError if it does not within `timeout`."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"connection still open after {timeout}s; got {self.buffer[:200]!r}")
            self.sock.settimeout(remaining)
            self._fill()
        data, self.buffer = self.buffer, b""
        return data


def get(path: str, host: str = "example.test", extra: str = "") -> bytes:
    """A GET request head as bytes."""
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode("latin-1")
