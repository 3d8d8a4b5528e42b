"""A tiny HTTP/1.1 client for the demo: registering with the registry and checking readiness.

One request per connection (`Connection: close`), the answer parsed with httptools, so chunked and
length-framed bodies both work. Not a general client: no TLS, no redirects, no pooling.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httptools
import orjson

__all__ = ["Answer", "fetch"]


@dataclass(slots=True)
class Answer:
    """A complete response: status, headers (names lower-case) and body."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        return orjson.loads(self.body)


class _Collector:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.parts: list[bytes] = []
        self.done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.answer.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.parts.append(body)

    def on_message_complete(self) -> None:
        self.done = True


async def fetch(
    method: str,
    url: str,
    *,
    json: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 3.0,
) -> Answer:
    """One exchange with `url` within `timeout` seconds; raises OSError or TimeoutError."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    body = orjson.dumps(json) if json is not None else b""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if json is not None:
        lines.append("Content-Type: application/json")
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    answer = Answer()
    collector = _Collector(answer)
    parser = httptools.HttpResponseParser(collector)
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(request)
            while not collector.done:
                data = await reader.read(65536)
                if not data:
                    break
                try:
                    parser.feed_data(data)
                except httptools.HttpParserError as exc:
                    raise OSError(f"{method} {url}: not an HTTP answer: {exc}") from exc
        finally:
            writer.close()
    answer.status = parser.get_status_code()
    answer.body = b"".join(collector.parts)
    return answer
