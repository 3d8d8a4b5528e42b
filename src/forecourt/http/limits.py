"""Limits the HTTP server enforces before a request may reach any upstream.

Defaults follow nginx/Kong where they have one (60 s header and keep-alive timeouts, 8 KiB request
line); the body limit is Forecourt's own, since an unbounded default is a memory hazard for a
buffering proxy.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Per-listener limits; every size is in bytes and every timeout in seconds."""

    max_request_line: int = 8 * 1024
    max_header_bytes: int = 32 * 1024
    max_header_count: int = 100
    max_body_bytes: int = 64 * 1024 * 1024
    header_timeout: float = 60.0
    body_timeout: float = 60.0
    keepalive_timeout: float = 60.0
    max_pipelined: int = 16
    send_timeout: float = 60.0
