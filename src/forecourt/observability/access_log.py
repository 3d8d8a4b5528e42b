"""The access log: one JSON line per request, written in batches.

Lines are serialised with orjson and gathered in memory; the runtime's watchdog flushes them a few
times a second (and at shutdown), so the per-request cost is one small dict and one dumps call,
not a syscall. Query strings are never logged: they often carry credentials. Plugins add fields
through `ctx.shared[LOG_FIELDS]`.
"""

from __future__ import annotations

import os
from time import time as wall_clock
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from forecourt.http.request import Request
    from forecourt.http.server import ClientConnection
    from forecourt.proxy.forward import Exchange

_FLUSH_LINES = 512
_IOV_MAX = 1024  # Linux's bound on buffers per writev
_NEWLINE = orjson.OPT_APPEND_NEWLINE
LOG_FIELDS = "log_fields"
"""Extension point: log-phase plugins put a dict at `ctx.shared[LOG_FIELDS]`; its keys are merged into
the request's record. Keys must not collide with the record's own; the `opentelemetry` plugin adds
`trace`. Records of requests with log-phase plugins are serialised when the batch is flushed (after
their log phase, which runs right after `log_exchange`), so the fields are there whichever order the
exchange calls the two in."""

# A record waiting for its request's log phase: the record and the request's `ctx.shared`.
_Pending = tuple[dict[str, Any], dict[str, Any]]


class AccessLog:
    """Writes access-log lines to a file descriptor (stdout by default), or nowhere."""

    def __init__(self, fd: int | None = 1, gateway: str = "") -> None:
        self.fd = fd
        self.gateway = gateway
        self.lines: list[bytes | _Pending] = []

    @classmethod
    def open(cls, target: str | None, gateway: str = "") -> AccessLog:
        """`target` is a path, `-`/None for stdout, or `off`."""
        if target in (None, "-", "stdout"):
            return cls(1, gateway)
        if target == "off":
            return cls(None, gateway)
        if target == "stderr":
            return cls(2, gateway)
        assert target is not None
        return cls(os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640), gateway)

    def log_exchange(self, ex: Exchange) -> None:
        if self.fd is None:
            return
        req = ex.req
        end = ex.runtime.clock()
        endpoint = ex.endpoint
        record = {
            "ts": wall_clock(),
            "request_id": req.request_id,
            "client_ip": ex.client.client_ip,
            "method": req.method,
            "path": req.raw_path,
            "status": ex.status,
            "route": ex.route.name,
            "service": ex.service.name,
            "target": endpoint.label if endpoint is not None else None,
            "tries": ex.attempts,
            "bytes_in": req.body_bytes,
            "bytes_out": ex.response_bytes,
            # Milliseconds to the microsecond, without round(): it goes through CPython's dtoa,
            # which costs as much as the rest of the record (orjson writes floats itself).
            "latencies": {
                "request": int((end - req.start) * 1e6) / 1000,
                "upstream": int((ex.t_first_byte - ex.t_sent) * 1e6) / 1000 if ex.t_first_byte else None,
                "proxy": int((ex.t_sent - req.start) * 1e6) / 1000 if ex.t_sent else None,
            },
        }
        if self.gateway:
            record["gateway"] = self.gateway
        backends = ex.backend_outcomes()  # an aggregate's per-backend status and latency
        if backends is not None:
            record["backends"] = backends
        ctx = ex.ctx
        if ctx is not None and ctx.chain.log:
            if len(self.lines) >= _FLUSH_LINES:
                self.flush()  # before adding this record: its log phase has not run yet
            self.lines.append((record, ctx.shared))
            return
        self.lines.append(orjson.dumps(record, option=_NEWLINE))
        if len(self.lines) >= _FLUSH_LINES:
            self.flush()

    def log_rejected(self, client: ClientConnection, req: Request) -> None:
        """A request the gateway answered itself before any exchange (parse error, no route)."""
        if self.fd is None:
            return
        record = {
            "ts": wall_clock(),
            "request_id": req.request_id,
            "client_ip": client.client_ip,
            "method": req.method,
            "path": req.raw_path,
            "status": req.error,
            "route": None,
            "service": None,
            "target": None,
            "bytes_in": req.body_bytes,
            "latencies": {"request": round((client.runtime.loop.time() - req.start) * 1000, 3)},
        }
        if self.gateway:
            record["gateway"] = self.gateway
        self.lines.append(orjson.dumps(record, option=_NEWLINE))

    def flush(self) -> None:
        """Write the batch with `writev`, the lines as they are (each ends with its newline): no
        join into one large buffer, which glibc would map and unmap on every flush."""
        if not self.lines or self.fd is None:
            self.lines.clear()
            return
        chunks = [line if isinstance(line, bytes) else _serialise(line) for line in self.lines]
        self.lines.clear()
        for at in range(0, len(chunks), _IOV_MAX):
            batch = chunks[at : at + _IOV_MAX]
            try:
                written = os.writev(self.fd, batch)
            except BlockingIOError:
                written = 0
            except OSError:
                return
            if written < sum(len(chunk) for chunk in batch):
                _write_rest(self.fd, b"".join(batch)[written:])


def _write_rest(fd: int, data: bytes) -> None:
    """What a short `writev` left (a pipe, a full disk): written with plain writes."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            continue
        except OSError:
            return
        view = view[written:]


def _serialise(pending: _Pending) -> bytes:
    record, shared = pending
    extra = shared.get(LOG_FIELDS)
    if extra:
        record.update(extra)
    return orjson.dumps(record, option=_NEWLINE)
