"""Flow-control limits across worker PROCESSES: concurrency, concurrency keys, rate limits.

The limits live in the claim (PostgreSQL), so several processes claiming at
once must never start more than a limit allows, every task must still
complete, and a freed slot must be taken at once (no poll wait).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _support.db import query
from _support.processes import worker_processes

from teguh._options import task_type
from teguh.app import App

from . import limits_app, proc_app
from .conftest import eventually

Q = limits_app.Q
HERE = Path(__file__).resolve().parent


@pytest.fixture
def limited(dsn: str) -> Iterator[App]:
    """The app of `limits_app.py` with its queue created and its types registered."""
    proc_app.create_ledger(dsn)
    application = limits_app.build_app(dsn)
    application.client.create_queue(Q)
    # what a starting worker registers, before any task is spawned
    tasks = sorted(application.tasks.items())
    types = [task_type(name, {**t.defaults, **t.limits}, None) for name, t in tasks]
    application.client._register_task_types(Q, types, None)
    try:
        yield application
    finally:
        application.client.close()


@pytest.fixture
def worker_process(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start `limits_app.py DSN OPTIONS` in a subprocess; SIGTERM (then SIGKILL, by pid) at teardown."""
    with worker_processes(HERE / "limits_app.py", tmp_path, grace=15) as processes:

        def start(dsn: str, **options: Any) -> subprocess.Popen:
            options.setdefault("poll_interval", 30)
            return processes.start_with_options(dsn, **options)

        yield start


def _query(dsn: str, sql: str, *args: Any) -> list[tuple]:
    return query(dsn, sql, args)


def _intervals(dsn: str, task_ids: list[str]) -> list[tuple[str, float, float]]:
    """(task_id, start, end) of every finished execution of these tasks, from the ledger."""
    rows = _query(
        dsn,
        "select s.task_id, extract(epoch from s.at), extract(epoch from min(e.at)) from ledger s"
        " join ledger e on e.task_id = s.task_id and e.attempt = s.attempt and e.what = 'end' and e.id > s.id"
        " where s.what = 'start' and s.task_id = any(%s) group by s.id, s.task_id, s.at",
        task_ids,
    )
    return [(r[0], float(r[1]), float(r[2])) for r in rows]


def _max_overlap(intervals: list[tuple[str, float, float]]) -> int:
    # an end before a start at the same instant: touching intervals do not overlap
    events = sorted([(s, 1) for _, s, _ in intervals] + [(e, -1) for _, _, e in intervals])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def _all_completed(app: App, task_ids: list[str]) -> bool:
    return all(app.client.get_task_result(Q, t).state == "completed" for t in task_ids)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_type_concurrency_holds_across_three_processes(dsn: str, limited: App, worker_process: Any) -> None:
    ids = [limited.spawn_task("capped", {"seconds": 0.3}).task_id for _ in range(12)]
    for n in range(3):
        worker_process(dsn, concurrency=3, worker_id=f"cap-{n}")
    eventually(lambda: _all_completed(limited, ids), timeout=60, what="every capped task completes")
    intervals = _intervals(dsn, ids)
    assert len(intervals) == 12
    assert _max_overlap(intervals) == 2, "never more than 2 at once, and the limit was used"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_key_concurrency_one_per_key_across_processes(dsn: str, limited: App, worker_process: Any) -> None:
    by_key: dict[str, list[str]] = {}
    for i in range(12):
        key = f"customer:{i % 4}"
        by_key.setdefault(key, []).append(
            limited.spawn_task("keyed", {"seconds": 0.3}, concurrency_key=key).task_id
        )
    for n in range(3):
        worker_process(dsn, concurrency=3, worker_id=f"key-{n}")
    ids = [t for tasks in by_key.values() for t in tasks]
    eventually(lambda: _all_completed(limited, ids), timeout=60, what="every keyed task completes")
    for key, tasks in by_key.items():
        assert _max_overlap(_intervals(dsn, tasks)) == 1, f"two tasks of {key} ran at once"
    assert _max_overlap(_intervals(dsn, ids)) >= 2, "different keys run in parallel"
    # in order within a key
    for tasks in by_key.values():
        starts = dict((t, s) for t, s, _ in _intervals(dsn, tasks))
        assert sorted(tasks, key=starts.__getitem__) == tasks


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_rate_limit_held_within_10_percent_with_four_workers(
    dsn: str, limited: App, worker_process: Any
) -> None:
    ids = [r.task_id for r in limited.client.spawn_tasks(Q, [{"task_name": "rated"} for _ in range(70)])]
    for n in range(4):
        worker_process(dsn, concurrency=2, worker_id=f"rate-{n}")
    eventually(lambda: _all_completed(limited, ids), timeout=60, what="every rated task completes")
    # the claim's own clock: when each task was handed out
    starts = sorted(
        float(r[0])
        for r in _query(dsn, f'select extract(epoch from first_started_at) from teguh."t_{Q}"'
                        " where task_name = 'rated'")
    )
    assert len(starts) == 70
    span = starts[-1] - starts[0]
    assert span >= (70 - 2) / 10, f"70 starts at 10/s took only {span:.2f} s"
    # a token nobody takes at once is partly lost (the bucket holds 1): a loaded machine is slower
    assert span <= 70 / 10 * 2.5, f"70 starts at 10/s took {span:.2f} s: far below the limit"
    # any window of 5 s holds at most 10 % over its 50 starts
    window = 5.0
    worst = max(sum(1 for t in starts if s <= t < s + window) for s in starts)
    assert worst <= 55, f"{worst} starts within {window} s at 10/s"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_slot_freed_by_a_failure_a_sleep_and_a_lease_expiry_is_reused(
    dsn: str, limited: App, worker_process: Any
) -> None:
    # concurrency 1: the second task can run only once the first gave its slot back
    for how in ("fail", "sleep"):
        first = limited.spawn_task("solo", {"first": how}).task_id
        proc = worker_process(dsn, concurrency=2, worker_id=f"solo-{how}")
        eventually(lambda first=first: proc_app.Ledger(dsn).count(first, "end") >= 1, timeout=30)
        second = limited.spawn_task("solo").task_id
        # the first waits 3 s (retry or sleep): the second runs meanwhile
        eventually(
            lambda second=second: limited.client.get_task_result(Q, second).state == "completed",
            timeout=2.5,
            what=f"the slot freed by a {how} is reused",
        )
        eventually(lambda first=first: _all_completed(limited, [first]), timeout=30)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(20) == 0

    blocked = limited.spawn_task("solo", {"first": "block"}).task_id
    doomed = worker_process(dsn, concurrency=2, claim_timeout=2, worker_id="solo-doomed")
    eventually(lambda: proc_app.Ledger(dsn).count(blocked, "start") == 1, timeout=30)
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait(10)
    after = limited.spawn_task("solo").task_id
    worker_process(dsn, concurrency=2, claim_timeout=2, worker_id="solo-rescuer")
    eventually(
        lambda: _all_completed(limited, [after]), timeout=15, what="the slot of the killed run is reused"
    )
    eventually(lambda: _all_completed(limited, [blocked]), timeout=30)


@pytest.mark.timeout(60)
def test_an_idle_worker_wakes_when_a_slot_frees(dsn: str, start_worker: Any) -> None:
    app = App(dsn, queue=Q)
    app.client.create_queue(Q)
    release = threading.Event()
    started: list[float] = []

    @app.task("gate", concurrency=1)
    def gate(params: Any) -> None:
        started.append(time.monotonic())
        if params == "first":
            release.wait(30)

    try:
        first = app.spawn_task("gate", "first")
        second = app.spawn_task("gate", "second", notify_done=True)
        start_worker(app, concurrency=2, poll_interval=30)
        start_worker(app, concurrency=2, poll_interval=30)
        eventually(lambda: len(started) == 1, timeout=10)
        time.sleep(0.5)  # give the second task every chance to start early (it must not)
        assert len(started) == 1, "the second task started while the first held the only slot"
        freed = time.monotonic()
        release.set()
        result = app.client.wait_for_result(Q, second.task_id, timeout=10)
        assert result.state == "completed"
        assert started[1] - freed < 3.0, "the freed slot was taken within the normal wake-up, not a poll"
        assert app.client.get_task_result(Q, first.task_id).state == "completed"
    finally:
        app.client.close()
