"""A response made at the gateway by a plugin (Kong's `kong.response.exit`)."""

from __future__ import annotations

from typing import Any

import orjson


class Response:
    """Status, headers and body a plugin answers with instead of proxying.

    `headers` are (name, value) byte pairs; Content-Length is added when the response is written.
    A `message` response gets Kong's body `{"message": ..., "request_id": ...}` filled in then.
    """

    __slots__ = ("body", "headers", "message", "status")

    def __init__(
        self,
        status: int,
        body: bytes = b"",
        headers: list[tuple[bytes, bytes]] | None = None,
        message: str | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers if headers is not None else []
        self.message = message

    @classmethod
    def error(cls, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> Response:
        """Kong's JSON error body (`{"message": ..., "request_id": ...}`), as Kong's own plugins answer."""
        return cls(status, headers=headers, message=message)

    @classmethod
    def json(cls, status: int, document: Any, headers: list[tuple[bytes, bytes]] | None = None) -> Response:
        out = [(b"Content-Type", b"application/json; charset=utf-8"), *(headers or [])]
        return cls(status, orjson.dumps(document), out)

    def render_body(self, request_id: str) -> bytes:
        if self.message is not None:
            return orjson.dumps({"message": self.message, "request_id": request_id})
        return self.body

    def has_header(self, name: bytes) -> bool:
        lowered = name.lower()
        return any(n.lower() == lowered for n, _ in self.headers)
