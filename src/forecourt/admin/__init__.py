"""The admin API: Kong's DB-less Admin API subset on `127.0.0.1:8001`, for every gateway of the process.

`start_admin(gateways, listen, state_dir)` binds the listener (SO_REUSEPORT: each worker process
binds it, any may answer) and starts publishing this worker's `/status` counters. See
`docs/admin-api.md` for the endpoints and how they differ from Kong's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from forecourt.admin.counters import CounterBoard, ServerCounters, StatusPublisher
from forecourt.admin.handlers import AdminAPI
from forecourt.admin.server import MAX_BODY_BYTES, AdminRequest, AdminResponse, AdminServer

if TYPE_CHECKING:
    from forecourt.gateway import Gateway

__all__ = [
    "MAX_BODY_BYTES",
    "AdminAPI",
    "AdminRequest",
    "AdminResponse",
    "AdminServer",
    "CounterBoard",
    "ServerCounters",
    "StatusPublisher",
    "parse_admin_listen",
    "start_admin",
]


def parse_admin_listen(value: str) -> tuple[str, int]:
    """`host:port` (or `[v6]:port`) of the admin listener; raises `ValueError`."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not port.isdigit() or " " in value.strip():
        raise ValueError(f"invalid admin listen address {value!r}: expected 'host:port' (or 'off')")
    return host.strip("[]") or "127.0.0.1", int(port)


async def start_admin(gateways: Sequence[Gateway], listen: str, state_dir: Path | None) -> AdminServer:
    """Serve the admin API for `gateways` (the first one is the default) on `listen`.

    `state_dir` is the run's state directory shared by its worker processes, where `/status`
    counters are exchanged; without it `/status` reports this process only.
    """
    loop = asyncio.get_running_loop()
    host, port = parse_admin_listen(listen)
    runtimes = [gateway for gateway in gateways]
    status = StatusPublisher(lambda: [g.runtime for g in runtimes], state_dir, loop)
    workers = max((g.options.workers for g in gateways), default=1)
    api = AdminAPI(gateways, listen, status, workers=workers)
    server = AdminServer(api, loop, on_close=status.close)
    try:
        await server.listen(host, port)
    except BaseException:
        server.close()
        raise
    status.start()
    return server
