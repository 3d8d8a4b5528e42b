"""Gateway-made responses: Kong's JSON error bodies and prebuilt status lines.

One place maps a status to its wire form so every error the gateway itself produces looks the same
(`{"message": ..., "request_id": ...}`, as Kong 3.x answers).
"""

from __future__ import annotations

from http import HTTPStatus

import orjson

from forecourt import __version__

VIA_VALUE = f"forecourt/{__version__}".encode()
SERVER_HEADER = b"Server: forecourt/" + __version__.encode() + b"\r\n"

# Kong's default messages for the statuses the gateway itself produces.
DEFAULT_MESSAGES: dict[int, str] = {
    400: "Bad request",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    411: "Length required",
    413: "Payload too large",
    414: "URI too long",
    417: "Expectation failed",
    431: "Request header fields too large",
    500: "An unexpected error occurred",
    501: "Not implemented",
    502: "An invalid response was received from the upstream server",
    503: "The upstream server is currently unavailable",
    504: "The upstream server is timed out",
    505: "HTTP version not supported",
}

NO_ROUTE_MESSAGE = "no Route matched with those values"


def _status_line(code: int) -> bytes:
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {code} {phrase}\r\n".encode("latin-1")


STATUS_LINES: dict[int, bytes] = {code: _status_line(code) for code in range(100, 600)}


def status_line(code: int, reason: bytes | None = None) -> bytes:
    """The status line for `code`, keeping an upstream's own reason phrase when it sent one."""
    if reason:
        return b"HTTP/1.1 %d %s\r\n" % (code, reason)
    line = STATUS_LINES.get(code)
    return line if line is not None else b"HTTP/1.1 %d \r\n" % code


def error_body(status: int, request_id: str, message: str | None = None) -> bytes:
    """Kong's error body: `{"message": ..., "request_id": ...}`."""
    return orjson.dumps(
        {"message": message or DEFAULT_MESSAGES.get(status, "Error"), "request_id": request_id}
    )


def error_response(
    status: int,
    request_id: str,
    message: str | None = None,
    *,
    close: bool,
    head_only: bool = False,
    request_id_header: bytes = b"X-Forecourt-Request-Id",
    extra_headers: bytes = b"",
) -> bytes:
    """A complete gateway-made response, ready to write to the client."""
    body = error_body(status, request_id, message)
    head = b"".join(
        (
            STATUS_LINES.get(status) or _status_line(status),
            b"Content-Type: application/json; charset=utf-8\r\n",
            b"Content-Length: %d\r\n" % len(body),
            request_id_header + b": " + request_id.encode() + b"\r\n",
            SERVER_HEADER,
            extra_headers,
            b"Connection: close\r\n\r\n" if close else b"\r\n",
        )
    )
    return head if head_only else head + body
