"""The install adds the attempt history to queues made before it, with their failed tasks in it."""

from __future__ import annotations

import psycopg2

import teguh

from .conftest import Q, claim_one


def _execute(dsn: str, statement: str) -> list[tuple]:
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def test_an_install_fills_the_history_of_an_older_queue(client: teguh.Client, dsn: str) -> None:
    failed = client.spawn_task(Q, "old", None, max_attempts=1).task_id
    client.fail_run(
        Q, claim_one(client, "old-worker").run_id, {"type": "E", "message": "before", "worker_id": "x"}
    )
    client.spawn_task(Q, "fine", None)
    # the queue as an earlier release left it: no attempt history, no task-name index
    _execute(dsn, f"drop table teguh.a_{Q}; drop index teguh.t_{Q}_tn")

    teguh.install(client)

    indexes = {row[0] for row in _execute(dsn, "select indexname from pg_indexes where schemaname = 'teguh'")}
    assert {f"t_{Q}_tn", f"a_{Q}_ft", f"a_{Q}_fe"} <= indexes
    assert [t.task_id for t in client.list_tasks(Q, state="failed")] == [failed]
    (attempt,) = client.get_task(Q, failed).attempt_history
    assert (attempt.attempt, attempt.final, attempt.reason["message"], attempt.worker_id) == (
        1,
        True,
        "before",
        "x",
    )
    assert client.queue_stats(Q).failed == 1


def test_a_retried_task_is_no_longer_counted_as_failed(client: teguh.Client) -> None:
    failed = client.spawn_task(Q, "again", None, max_attempts=1).task_id
    client.fail_run(Q, claim_one(client).run_id, {"message": "first"})
    assert client.queue_stats(Q).failed == 1
    client.retry_task(Q, failed)
    stats = client.queue_stats(Q)
    assert (stats.failed, stats.pending, stats.failed_last_hour) == (0, 1, 0)
    client.fail_run(Q, claim_one(client).run_id, {"message": "second"})
    assert client.queue_stats(Q).failed == 1
    history = client.get_task(Q, failed).attempt_history
    assert [(a.attempt, a.final) for a in history] == [(1, False), (2, True)]
