"""The access log's batch writes (forecourt.observability.access_log)."""

from __future__ import annotations

import fcntl
import os
import threading
import time

import orjson

from forecourt.observability.access_log import AccessLog


def _drain(fd: int, into: bytearray, slow: bool) -> None:
    while chunk := os.read(fd, 4096):
        into += chunk
        if slow:
            time.sleep(0.0005)


def _write_batch(lines: int, nonblocking: bool) -> list[dict[str, int]]:
    read, write = os.pipe()
    if nonblocking:  # short writev results: the rest must still go out, in order
        fcntl.fcntl(write, fcntl.F_SETFL, fcntl.fcntl(write, fcntl.F_GETFL) | os.O_NONBLOCK)
    received = bytearray()
    reader = threading.Thread(target=_drain, args=(read, received, nonblocking))
    reader.start()
    log = AccessLog(write)
    log.lines.extend(
        orjson.dumps({"n": n, "pad": "x" * 200}, option=orjson.OPT_APPEND_NEWLINE) for n in range(lines)
    )
    log.flush()
    os.close(write)
    reader.join(10)
    os.close(read)
    assert log.lines == []
    return [orjson.loads(line) for line in bytes(received).splitlines()]


def test_a_batch_larger_than_one_writev_is_written_whole_and_in_order() -> None:
    records = _write_batch(2500, nonblocking=False)
    assert [r["n"] for r in records] == list(range(2500))


def test_short_writes_to_a_full_pipe_lose_nothing() -> None:
    records = _write_batch(1500, nonblocking=True)
    assert [r["n"] for r in records] == list(range(1500))
