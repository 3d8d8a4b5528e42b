"""Shared helpers of the offloading plugins' tests: schema checks and one-service gateway configs."""

from __future__ import annotations

import socket
from typing import Any

import yaml

from forecourt.config import ConfigError, parse_config
from forecourt.pipeline import PluginRegistry
from forecourt.plan.build import PlanBuilder
from tests.support.upstreams import Behaviour, request_complete


def config_errors(name: str, config: dict[str, Any] | None) -> list[str]:
    """`path: message` for every problem `forecourt check` finds in a global `name` plugin."""
    entry: dict[str, Any] = {"name": name}
    if config is not None:
        entry["config"] = config
    document = {
        "_format_version": "3.0",
        "services": [{"name": "svc", "url": "http://127.0.0.1:1", "routes": [{"name": "r", "paths": ["/"]}]}],
        "plugins": [entry],
    }
    builder = PlanBuilder(registry=PluginRegistry())
    try:
        loaded = parse_config(yaml.safe_dump(document), "gw.yaml", builder.registry)
        builder.validate(loaded)
    except ConfigError as exc:
        return [f"{issue.path}: {issue.message}" for issue in exc.issues]
    return []


def gateway_config(upstream_port: int, plugins: list[dict[str, Any]], **route: Any) -> dict[str, Any]:
    """One service at 127.0.0.1:`upstream_port`, one route (default prefix `/`), `plugins` on it."""
    route.setdefault("name", "r")
    route.setdefault("paths", ["/"])
    return {
        "_format_version": "3.0",
        "services": [
            {
                "name": "svc",
                "url": f"http://127.0.0.1:{upstream_port}",
                "routes": [route],
                "plugins": plugins,
            }
        ],
    }


def scripted(responses: dict[str, bytes]) -> Behaviour:
    """An upstream behaviour answering each complete request by its path's first segment."""

    def behave(sock: socket.socket, received: bytes) -> bool:
        size = request_complete(received)
        if not size:
            return False
        method, target, _ = received.split(b" ", 2)
        key = target.decode().split("?")[0].strip("/").split("/")[0]
        answer = responses.get(key, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        if method == b"HEAD":
            answer = answer.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
        sock.sendall(answer)
        return True

    return behave


def response(
    body: bytes, *, content_type: str = "application/json", chunked: bool = False, **headers: str
) -> bytes:
    """A raw upstream response; `headers` use `_` for `-` (Content_Encoding=...)."""
    lines = [b"HTTP/1.1 200 OK", b"Content-Type: " + content_type.encode()]
    lines += [f"{k.replace('_', '-')}: {v}".encode() for k, v in headers.items()]
    if chunked:
        half = len(body) // 2
        pieces = [p for p in (body[:half], body[half:]) if p]
        framed = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
        return b"\r\n".join([*lines, b"Transfer-Encoding: chunked", b"", framed])
    return b"\r\n".join([*lines, b"Content-Length: %d" % len(body), b"", body])
