"""A connection released to the pool while a slow client had paused its reading is resumed."""

from __future__ import annotations

import asyncio

from forecourt.http.pool import ConnectionPool
from forecourt.http.upstream import UpstreamConnection


class RecordingTransport:
    def __init__(self) -> None:
        self.paused = False
        self.calls: list[str] = []

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        self.paused = True
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.paused = False
        self.calls.append("resume")

    def close(self) -> None:
        self.calls.append("close")


def test_release_resumes_a_paused_connection() -> None:
    loop = asyncio.new_event_loop()
    try:
        pool = ConnectionPool(loop)
        conn = UpstreamConnection(pool, "127.0.0.1:1")
        transport = RecordingTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        pool.all.add(conn)
        conn.pause_reading()
        conn.pause_reading()  # idempotent: one pause_reading on the transport
        pool.release(conn)
        assert transport.calls == ["pause", "resume"]
        assert not transport.paused
        assert pool.take_idle("127.0.0.1:1") is conn
        pool.release(conn)  # not paused: nothing to resume
        assert transport.calls == ["pause", "resume"]
    finally:
        loop.close()
