"""The node-local counter table: exact check-and-count, window turnover, reclamation, processes."""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import multiprocessing.synchronize
import os
import threading
import time
import warnings
from pathlib import Path

import pytest

import forecourt
from forecourt.state import SharedCounterTable, Usage, Window, shared_table


@pytest.fixture(autouse=True, params=["c-fast-path", "python"])
def take_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with the C fast path of one-window takes (when built) and without it."""
    if request.param == "python":
        monkeypatch.setattr(shared_table, "_TAKE_HOME", None)
    elif forecourt.NATIVE_STATUS.startswith("compiled"):
        assert shared_table._TAKE_HOME is not None
    return str(request.param)


def windows(now: int, **limits: int) -> list[Window]:
    lengths = {"second": 1, "minute": 60, "hour": 3600}
    out = []
    for period, limit in limits.items():
        length = lengths[period]
        start = now - now % length
        out.append(Window(period, start, start + length, limit))
    return out


@pytest.fixture
def table(tmp_path: Path) -> SharedCounterTable:
    return SharedCounterTable(tmp_path / "counters.table")


def test_counts_until_the_limit_and_a_refusal_counts_nothing(table: SharedCounterTable) -> None:
    ws = windows(int(time.time()), hour=3)
    assert [table.take("k", ws).counts for _ in range(3)] == [(1,), (2,), (3,)]
    refused = table.take("k", ws)
    assert refused == Usage(False, (3,))
    assert table.take("k", ws, 0) == Usage(True, (3,))  # a zero take reads the count
    assert table.take("other", ws) == Usage(True, (1,))


def test_every_window_is_checked_before_any_is_counted(table: SharedCounterTable) -> None:
    now = int(time.time())
    ws = windows(now, minute=10, hour=2)
    assert table.take("k", ws).counts == (1, 1)
    assert table.take("k", ws).counts == (2, 2)
    # The hour is full: the minute must not count the refused request either.
    assert table.take("k", ws) == Usage(False, (2, 2))
    assert table.take("k", windows(now, minute=10)).counts == (3,)


def test_a_new_window_starts_from_zero(table: SharedCounterTable) -> None:
    now = int(time.time())
    first = Window("minute", now - 120, now - 60, 2)
    assert table.take("k", [first]).counts == (1,)
    assert table.take("k", [first]).counts == (2,)
    assert not table.take("k", [first]).allowed
    later = Window("minute", now - 60, now, 2)  # same counter, next window
    assert table.take("k", [later]).counts == (1,)


def test_ended_windows_are_reclaimed(tmp_path: Path) -> None:
    small = SharedCounterTable(tmp_path / "small.table", stripes=1, slots_per_stripe=4, probe=4)
    now = int(time.time())
    old = [Window("minute", now - 120, now - 60, 100)]
    for key in "abcd":
        small.take(key, old)
    assert small.live_slots() == 0  # all four slots hold windows that ended
    current = windows(now, hour=100)
    for key in "efgh":
        assert small.take(key, current).counts == (1,)
    assert small.live_slots() == 4
    assert small.evictions == 0
    # Every key is still found where it was put, with its count.
    assert [small.take(key, current).counts for key in "efgh"] == [(2,)] * 4


def test_a_full_table_takes_over_the_window_that_ends_first(tmp_path: Path) -> None:
    small = SharedCounterTable(tmp_path / "small.table", stripes=1, slots_per_stripe=2, probe=2)
    now = int(time.time())
    small.take("soon", [Window("hour", now, now + 10, 5)])
    small.take("late", [Window("hour", now, now + 1000, 5)])
    assert small.take("new", [Window("hour", now, now + 1000, 5)]).counts == (1,)
    assert small.evictions == 1
    assert small.take("late", [Window("hour", now, now + 1000, 5)]).counts == (2,)


def test_processes_opening_the_file_share_the_counters(tmp_path: Path) -> None:
    path = tmp_path / "shared.table"
    one = SharedCounterTable(path, stripes=8, slots_per_stripe=64)
    ws = windows(int(time.time()), hour=100)
    one.take("k", ws)
    # Another opener adopts the geometry in the file, whatever it asked for.
    two = SharedCounterTable(path, stripes=16, slots_per_stripe=128)
    assert (two.stripes, two.slots_per_stripe) == (8, 64)
    assert two.take("k", ws).counts == (2,)
    assert one.take("k", ws, 0).counts == (2,)
    one.release()
    two.release()


def test_a_foreign_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "junk.table"
    path.write_bytes(b"not a table")
    table = SharedCounterTable(path, stripes=2, slots_per_stripe=8)
    assert table.take("k", windows(int(time.time()), hour=1)).counts == (1,)
    assert path.stat().st_size == 64 + 2 * 64 + 2 * 8 * 32  # header, a lock per stripe, slots


def test_open_returns_one_table_per_file_per_process(tmp_path: Path) -> None:
    first = SharedCounterTable.for_state_dir(tmp_path, "gw")
    assert SharedCounterTable.for_state_dir(tmp_path, "gw") is first
    assert (tmp_path / "counters" / "gw.table").exists()
    assert SharedCounterTable.for_state_dir(None, "gw") is SharedCounterTable.for_state_dir(None, "x")
    first.release()


def _hammer(path: str | None, table: SharedCounterTable | None, key: str, takes: int, limit: int) -> int:
    """Take `takes` times in this process; return how many were allowed."""
    target = table if table is not None else SharedCounterTable(path)
    ws = [Window("hour", 0, 2**40, limit)]
    return sum(target.take(key, ws).allowed for _ in range(takes))


def _child(path: str | None, key: str, takes: int, limit: int, results: multiprocessing.Queue[int]) -> None:
    results.put(_hammer(path, None, key, takes, limit))


def _fork_child(key: str, takes: int, limit: int, results: multiprocessing.Queue[int]) -> None:
    results.put(_hammer(None, _INHERITED[0], key, takes, limit))


_INHERITED: list[SharedCounterTable] = []


def _run_processes(target: object, args: tuple[object, ...], count: int) -> list[int]:
    ctx = multiprocessing.get_context("fork")
    results: multiprocessing.Queue[int] = ctx.Queue()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads alive (3.12+)
        procs = [ctx.Process(target=target, args=(*args, results)) for _ in range(count)]  # type: ignore[arg-type]
        for proc in procs:
            proc.start()
    got = [results.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(10)
        assert proc.exitcode == 0
    return got


@pytest.mark.parametrize(("limit", "expected"), [(2500, 2500), (10**9, 4 * 2000)])
def test_concurrent_processes_count_exactly(tmp_path: Path, limit: int, expected: int) -> None:
    path = str(tmp_path / "race.table")
    allowed = _run_processes(_child, (path, "hot", 2000, limit), 4)
    assert sum(allowed) == expected
    table = SharedCounterTable(path)
    assert table.take("hot", [Window("hour", 0, 2**40, limit)], 0).counts == (expected,)
    table.release()


def test_a_private_table_becomes_shared_when_the_process_forks() -> None:
    table = SharedCounterTable()  # no state dir: an unlinked temp file, no locking until a fork
    assert not table.shared
    _INHERITED[:] = [table]
    try:
        allowed = _run_processes(_fork_child, ("hot", 2000, 3000), 4)
    finally:
        _INHERITED.clear()
    assert sum(allowed) == 3000
    assert not table.shared  # the parent itself did not fork
    table.release()


def _die_holding_the_lock(path: str, key: str) -> None:
    table = SharedCounterTable.open(path)
    table.take(key, windows(int(time.time()), hour=10))
    stripe = table._places[key].stripe
    lock = table._locks[stripe]
    assert table._try_lock(lock) == 0
    os._exit(0)  # killed mid-take: the stripe's lock is still held


def test_a_worker_dying_while_holding_a_lock_does_not_wedge_the_table(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = str(tmp_path / "crash.table")
    table = SharedCounterTable.open(path)
    ctx = multiprocessing.get_context("fork")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads alive (3.12+)
        child = ctx.Process(target=_die_holding_the_lock, args=(path, "victim"))
        child.start()
    child.join(10)
    assert child.exitcode == 0
    # The record lock is dropped by the kernel; the robust mutex is recovered by the next taker.
    with caplog.at_level(logging.WARNING, logger="forecourt.state.shared_table"):
        assert table.take("victim", windows(int(time.time()), hour=10)).counts == (2,)
    assert table.take("victim", windows(int(time.time()), hour=10)).counts == (3,)
    if table._mutexes:
        assert "recovered the lock of a dead worker" in caplog.text


def test_a_take_waits_for_a_stripe_locked_by_someone_else(tmp_path: Path) -> None:
    table = SharedCounterTable(tmp_path / "busy.table")
    ws = windows(int(time.time()), hour=10)
    assert table.take("k", ws).counts == (1,)
    lock = table._locks[table._places["k"].stripe]
    assert table._try_lock(lock) == 0  # as another process in the middle of a take would
    results: list[Usage] = []
    taker = threading.Thread(target=lambda: results.append(table.take("k", ws)))
    taker.start()
    taker.join(0.3)
    assert taker.is_alive() and not results  # waiting, not counting past the lock
    table._unlock(lock)
    taker.join(5)
    assert results == [Usage(True, (2,))]


def test_the_c_fast_path_answers_like_the_python_one() -> None:
    if not forecourt.NATIVE_STATUS.startswith("compiled"):  # pure Python hides the C helper too
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module("forecourt.state._slot_take")
        assert shared_table._TAKE_HOME is None
        return
    from forecourt.state import _slot_take

    assert (_slot_take.UNDECIDED, _slot_take.RECOVERED) == (shared_table._UNDECIDED, shared_table._RECOVERED)
    table = SharedCounterTable()
    now = int(time.time())
    ws = windows(now, hour=2)
    place = table._place("k")
    assert table.take("k", ws).counts == (1,)  # claims the home slot (Python path)
    slot_key, address = table._home(place, "hour")
    window = ws[0]
    take = _slot_take.take_home
    assert take(0, address, slot_key, window.start, window.end, 2, 1) == 2
    assert take(0, address, slot_key, window.start, window.end, 2, 1) == -3  # refused at count 2
    assert take(0, address, slot_key ^ 1, window.start, window.end, 2, 1) == _slot_take.UNDECIDED
    later = window.start + 3600
    assert take(0, address, slot_key, later, later + 3600, 2, 1) == 1  # the next window from 0
    with pytest.raises(ValueError):
        take(0, 0, slot_key, later, later + 3600, 2, 1)
    with pytest.raises(TypeError):
        take(0, address, slot_key)  # type: ignore[call-arg]
    table.release()


def test_per_take_cost(tmp_path: Path) -> None:
    """Measure a take (shared file, locked) and report it; the bound only catches gross regressions."""
    table = SharedCounterTable(tmp_path / "cost.table")
    one = windows(int(time.time()), hour=10**9)
    three = windows(int(time.time()), second=10**9, minute=10**9, hour=10**9)
    keys = [f"gw|r|s||ip:10.0.{i // 256}.{i % 256}" for i in range(1000)]
    costs = {}
    for name, ws in (("1 period", one), ("3 periods", three)):
        best = float("inf")
        for _ in range(5):  # the best of five rounds: other processes share the CPU
            start = time.perf_counter()
            for key in keys:
                table.take(key, ws)
            best = min(best, (time.perf_counter() - start) / len(keys) * 1e6)
        costs[name] = best
    print(
        f"shared table take (pid {os.getpid()}): " + ", ".join(f"{k}: {v:.2f} us" for k, v in costs.items())
    )
    assert costs["1 period"] < 100


def _open_and_take_once(
    path: str, start: multiprocessing.synchronize.Event, results: multiprocessing.Queue[int]
) -> None:
    start.wait(10)
    table = SharedCounterTable(path)  # every process creates or finds the file at the same moment
    results.put(int(table.take("only-one", [Window("hour", 0, 2**40, 1)]).allowed))
    table.release()


def test_processes_creating_the_file_at_once_share_one_table(tmp_path: Path) -> None:
    """Creation races: one process making the file while another finds it half made must still
    end with both on one table (one secret, one set of counters), so one take in all is allowed."""
    ctx = multiprocessing.get_context("fork")
    for attempt in range(15):
        path = str(tmp_path / f"fresh-{attempt}.table")
        start = ctx.Event()
        results: multiprocessing.Queue[int] = ctx.Queue()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads alive (3.12+)
            procs = [ctx.Process(target=_open_and_take_once, args=(path, start, results)) for _ in range(4)]
            for proc in procs:
                proc.start()
        start.set()
        allowed = [results.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join(10)
            assert proc.exitcode == 0
        assert sum(allowed) == 1, (attempt, allowed)
