"""The shared `/status` counter slots: one per worker in an mmap'd file, summed by whoever answers."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from forecourt.admin.counters import CounterBoard, ServerCounters


def counters(accepted: int, requests: int, active: int) -> ServerCounters:
    return ServerCounters(
        connections_accepted=accepted,
        connections_handled=accepted,
        total_requests=requests,
        connections_active=active,
        connections_waiting=active,
    )


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_each_worker_gets_its_own_slot_and_reads_the_others(tmp_path: Path) -> None:
    mine = CounterBoard(tmp_path, gateways=2)
    other = CounterBoard(tmp_path, gateways=2, pid=os.getppid())  # any live process stands in
    assert mine.slot != other.slot
    other.publish([counters(5, 50, 2), counters(1, 10, 1)], rss=1 << 20, now=1.0)
    (seen,) = mine.others()
    assert seen.pid == os.getppid()
    assert seen.alive
    assert seen.rss == 1 << 20
    assert seen.gateways[0] == counters(5, 50, 2)
    assert seen.gateways[1] == counters(1, 10, 1)
    mine.close()
    other.close()


def test_a_dead_workers_slot_is_reused_and_its_totals_carried_on(tmp_path: Path) -> None:
    reader = CounterBoard(tmp_path, gateways=1, pid=os.getppid())
    old = CounterBoard(tmp_path, gateways=1, pid=dead_pid())
    old.publish([counters(7, 70, 3)], rss=0, now=1.0)
    old.close()
    (seen,) = reader.others()
    assert not seen.alive  # its gauges must not count, its totals still do
    new = CounterBoard(tmp_path, gateways=1, pid=os.getpid())
    assert new.slot == old.slot
    (total,) = new.totals([counters(1, 2, 1)])
    assert total.connections_accepted == 8
    assert total.total_requests == 72
    assert total.connections_active == 1
    reader.close()
    new.close()
