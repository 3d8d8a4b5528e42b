"""The per-request record the server fills from parser callbacks.

Kept deliberately flat (slots, raw bytes) because one is made for every request: the header list is
the parser's own pairs, and anything derived from it is computed once in `headers_complete`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mypy_extensions import mypyc_attr

if TYPE_CHECKING:
    from forecourt.routing import RouteMatch


# Compiled: one freed instance is kept for the next request (no allocation per request).
@mypyc_attr(free_list_len=1)
class Request:
    """One HTTP request as received from a client."""

    __slots__ = (
        "body",
        "body_bytes",
        "chunked",
        "complete",
        "conn_tokens",
        "content_length",
        "error",
        "error_message",
        "expect_continue",
        "forwarded_block",
        "headers",
        "host",
        "keep_alive",
        "match",
        "method",
        "parsed_headers",
        "path",
        "query",
        "raw_path",
        "request_id",
        "start",
        "target",
        "version",
        "xf_headers",
        "xff",
    )

    def __init__(self, start: float) -> None:
        self.start = start
        self.target = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.method = ""
        self.version = "1.1"
        self.path = ""
        self.raw_path = ""
        self.query = b""
        self.host: bytes | None = None
        self.keep_alive = True
        self.content_length: int | None = None
        self.chunked = False
        self.expect_continue = False
        self.conn_tokens: frozenset[bytes] | None = None
        self.xf_headers: dict[bytes, bytes] | None = None
        # Built by the server while it reads the head: the headers forwarded unchanged, as wire
        # bytes ending in CRLF, and the client's X-Forwarded-For (to append the peer to).
        self.forwarded_block = b""
        self.xff: bytes | None = None
        # The header list as parsed, kept for a route with plugins: when they only appended
        # headers, `forwarded_block` is still good and only the new ones need writing.
        self.parsed_headers: list[tuple[bytes, bytes]] | None = None
        self.body: list[bytes] = []
        self.body_bytes = 0
        self.complete = False
        self.match: RouteMatch | None = None
        self.request_id = ""
        self.error = 0
        self.error_message: str | None = None

    def has_body(self) -> bool:
        """Whether a body follows the head (chunked or a non-zero Content-Length)."""
        return self.chunked or bool(self.content_length)
