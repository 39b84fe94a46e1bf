"""Batches through the Python API, with real workers: counts, policies, on_complete once, atomicity."""

from __future__ import annotations

import threading
from typing import Any

import psycopg2
import pytest
from _support.polling import eventually

from teguh import BatchNotFound, InvalidArgument, QueueNotFound, TeguhError
from teguh.app import App
from teguh.testing import WorkerThread

from . import batch_app
from .batch_app import Q
from .conftest import process_logs


def _worker(app: App, **options: Any) -> WorkerThread:
    """A worker of `app` in a thread, for a `with` block (started on entry, stopped on exit)."""
    return WorkerThread(app.worker(install_signal_handlers=False, poll_interval=30, **options))


def _finished(app: App, batch_id: str) -> Any:
    info = app.client.get_batch(batch_id)
    return info if info.finished else None


def test_continue_runs_every_item_and_reports_counts(app: App, dsn: str) -> None:
    items = [{"n": i, "fail": i % 3 == 0} for i in range(9)]
    batch = app.spawn_batch("item", items, on_complete="after")
    assert (batch.queue, batch.task_name, batch.total) == (Q, "item", 9)
    info = app.client.get_batch(batch.id)
    assert (info.total, info.pending, info.running, info.state) == (9, 9, 0, "running")
    with _worker(app, concurrency=4):
        info = eventually(lambda: _finished(app, batch.id), timeout=30)
        eventually(lambda: batch_app.ledger(dsn, "after"), timeout=30)
    assert (info.completed, info.failed, info.cancelled, info.pending, info.running) == (6, 3, 0, 0, 0)
    assert info.state == "failed" and info.on_failure == "continue" and info.on_complete == "after"
    (after,) = batch_app.ledger(dsn, "after")
    assert after[0] == info.on_complete_task_id
    assert after[1] == {
        "batch_id": batch.id, "queue": Q, "task_name": "item", "state": "failed",
        "total": 9, "completed": 6, "failed": 3, "cancelled": 0,
    }
    results = app.client.batch_results(batch.id, limit=4)
    results += app.client.batch_results(batch.id, limit=100, after=results[-1].task_id)
    assert sorted(r.task_id for r in results) == sorted(batch.task_ids)
    by_task = {r.task_id: r for r in results}
    for i, task_id in enumerate(batch.task_ids):
        item = by_task[task_id]
        if i % 3 == 0:
            assert item.state == "failed" and f"item {i} failed" in str(item.failure_reason)
        else:
            assert item.state == "completed" and item.result == {"n": i}


def test_fail_fast_cancels_the_rest_at_the_first_failure(app: App, dsn: str) -> None:
    items = [{"n": 0, "fail": True}] + [{"n": i} for i in range(1, 50)]
    batch = app.spawn_batch("item", items, on_failure="fail_fast", on_complete="after")
    with _worker(app, concurrency=1, batch_size=1):
        info = eventually(lambda: _finished(app, batch.id), timeout=30)
        eventually(lambda: batch_app.ledger(dsn, "after"), timeout=30)
    assert info.state == "failed" and info.failed == 1
    assert info.completed + info.cancelled == 49 and info.cancelled >= 40, info
    ran = {row[0] for row in batch_app.ledger(dsn, "item")}
    # an item the worker held (running or buffered) when the batch failed may
    # still have started; it learns of the cancel at its next engine call
    assert len(ran) <= 1 + info.completed + 2, (len(ran), info)
    assert len(batch_app.ledger(dsn, "after")) == 1


def test_rollback_of_the_callers_transaction_spawns_nothing(app: App, dsn: str) -> None:
    conn = psycopg2.connect(dsn)
    try:
        batch = app.spawn_batch("item", [{"n": 1}, {"n": 2}], conn=conn)
        conn.rollback()
    finally:
        conn.close()
    with pytest.raises(BatchNotFound):
        app.client.get_batch(batch.id)
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("select count(*) from teguh.tasks")
            assert cur.fetchone()[0] == 0
    finally:
        conn.close()


def test_commit_of_the_callers_transaction_keeps_the_batch(app: App, dsn: str) -> None:
    conn = psycopg2.connect(dsn)
    try:
        batch = app.spawn_batch("item", [{"n": 1}], conn=conn)
        conn.commit()
    finally:
        conn.close()
    assert app.client.get_batch(batch.id).total == 1


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"on_failure": "stop"}, InvalidArgument, "on_failure must be 'continue' or 'fail_fast'"),
        ({"on_complete": "nobody"}, InvalidArgument, "on_complete='nobody' names no task registered"),
        ({"idempotency_key": "k"}, InvalidArgument, "idempotency_key"),
        ({"colour": "red"}, InvalidArgument, "unknown spawn option"),
        ({"queue": "nowhere"}, QueueNotFound, "nowhere"),
    ],
)
def test_bad_input_is_refused_and_writes_nothing(
    app: App, dsn: str, kwargs: dict, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        app.spawn_batch("item", [{"n": 1}], **kwargs)
    with pytest.raises(InvalidArgument, match="at least one item"):
        app.spawn_batch("item", [])
    with pytest.raises(TypeError, match=r"items\[1\]"):
        app.spawn_batch("item", [1, {2}])
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("select (select count(*) from teguh.tasks), (select count(*) from teguh.batches)")
            assert cur.fetchone() == (0, 0)
    finally:
        conn.close()


def test_client_refuses_an_on_complete_no_worker_registered(app: App) -> None:
    with _worker(app):  # registers the app's task types on the queue
        pass
    with pytest.raises(InvalidArgument, match='on_complete names task "nobody"'):
        app.client.spawn_batch(Q, "item", [1], on_complete="nobody")
    batch = app.client.spawn_batch(Q, "item", [1], on_complete="after")
    assert app.client.get_batch(batch.id).on_complete == "after"


def test_unknown_batch_and_bad_paging(app: App) -> None:
    with pytest.raises(BatchNotFound):
        app.client.get_batch("00000000-0000-0000-0000-000000000000")
    with pytest.raises(BatchNotFound):
        app.client.batch_results("00000000-0000-0000-0000-000000000000")
    batch = app.spawn_batch("item", [1])
    with pytest.raises(InvalidArgument):
        app.client.batch_results(batch.id, limit=0)
    with pytest.raises(InvalidArgument):
        app.client.batch_results(batch.id, limit=1001)
    with pytest.raises(InvalidArgument, match="state must be one of"):
        app.client.batch_results(batch.id, state="done")
    assert app.client.batch_results(batch.id, state="completed") == []
    assert [i.task_id for i in app.client.batch_results(batch.id, state="pending")] == list(batch.task_ids)


def test_eager_mode_refuses_batches(app: App) -> None:
    from teguh.testing import eager

    with eager(app), pytest.raises(TeguhError, match="no eager mode"):
        app.spawn_batch("item", [1])


def test_two_commits_racing_on_the_last_two_items_spawn_on_complete_once(app: App, dsn: str) -> None:
    """Both last items end in open transactions; the commits race: one on_complete."""
    batch = app.spawn_batch("item", [1, 2], on_complete="after")
    runs = app.client.claim_task(Q, "w", qty=2)
    conns = [psycopg2.connect(dsn) for _ in runs]
    try:
        for conn, run in zip(conns, runs, strict=True):
            app.client.complete_run(Q, run.run_id, {"ok": True}, conn=conn)
        start = threading.Barrier(len(conns))
        errors: list[BaseException] = []

        def commit(conn: Any) -> None:
            try:
                start.wait(10)
                conn.commit()
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=commit, args=(c,)) for c in conns]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert not errors
    finally:
        for conn in conns:
            conn.close()
    info = app.client.get_batch(batch.id)
    assert (info.completed, info.state) == (2, "completed")
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("select count(*) from teguh.tasks where task_name = 'after'")
            assert cur.fetchone()[0] == 1
    finally:
        conn.close()


@pytest.mark.timeout(120)
def test_worker_processes_racing_spawn_on_complete_exactly_once(
    app: App, dsn: str, worker_processes: Any
) -> None:
    """Three worker processes racing; the last test's two items wait for each other and end together."""
    rounds = 3
    batches = []
    for _ in range(rounds):
        items: list[Any] = [{"n": i} for i in range(60)]
        batches.append(app.spawn_batch("item", items, on_complete="after"))
    # one run at a time per process: the two meeting items must run in two processes
    options = {"concurrency": 1, "prefetch": 0, "batch_size": 1, "poll_interval": 30}
    procs = [worker_processes(dsn, **options) for _ in range(3)]
    eventually(
        lambda: all(app.client.get_batch(b.id).finished for b in batches),
        timeout=90,
        what=lambda: process_logs(procs),
    )
    # the last two items of a fresh batch meet, in two processes, and end together
    meet = app.spawn_batch("item", [{"n": 0, "meet": 2}, {"n": 1, "meet": 2}], on_complete="after")
    info = eventually(lambda: _finished(app, meet.id), timeout=60, what=lambda: process_logs(procs))
    assert info.completed == 2
    pids = {row[2] for row in batch_app.ledger(dsn, "item") if row[1].get("meet")}
    assert len(pids) == 2, "the two meeting items ran in two processes"
    eventually(lambda: len(batch_app.ledger(dsn, "after")) >= rounds + 1, timeout=30)
    afters = batch_app.ledger(dsn, "after")
    assert sorted(row[1]["batch_id"] for row in afters) == sorted(b.id for b in [*batches, meet])
    for b in [*batches, meet]:
        info = app.client.get_batch(b.id)
        assert (info.completed, info.state) == (b.total, "completed")


def test_list_batches_newest_first_by_queue_and_state(app: App) -> None:
    app.client.create_queue("other")
    first = app.spawn_batch("item", [1])
    second = app.spawn_batch("item", [1, 2])
    elsewhere = app.client.spawn_batch("other", "item", [1])
    (run,) = app.client.claim_task(Q, "w", qty=1)  # the first batch's only item
    app.client.complete_run(Q, run.run_id)
    assert [b.id for b in app.client.list_batches()] == [elsewhere.id, second.id, first.id]
    assert [b.id for b in app.client.list_batches(Q)] == [second.id, first.id]
    page = app.client.list_batches(Q, limit=1)
    assert [b.id for b in page] == [second.id] and page[0].total == 2
    assert [b.id for b in app.client.list_batches(Q, after=page[0].id)] == [first.id]
    assert [b.id for b in app.client.list_batches(state="completed")] == [first.id]
    with pytest.raises(InvalidArgument, match="state must be one of"):
        app.client.list_batches(state="done")
