"""`conn=`: calls inside the caller's transaction, committed or rolled back with it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest

import teguh


@pytest.fixture
def app_conn(dsn: str) -> Iterator[Any]:
    """The application's own connection, in a transaction as a web request would use it."""
    conn = psycopg2.connect(dsn)
    try:
        yield conn
    finally:
        conn.close()


def count(db: Any, queue: str) -> int:
    return db.value(f"select count(*) from teguh.t_{queue}")


def test_spawn_in_a_rolled_back_transaction_leaves_no_task(
    client: teguh.Client, queue: str, app_conn: Any, db: Any
) -> None:
    with app_conn.cursor() as cur:
        cur.execute("select 1")  # the application's own work in the same transaction
    result = client.spawn_task(queue, "t", {"a": 1}, conn=app_conn)
    assert result.created
    assert count(db, queue) == 0  # not committed: invisible to others
    app_conn.rollback()
    assert count(db, queue) == 0
    assert client.claim_task(queue, "w") == []


def test_spawn_in_a_committed_transaction_leaves_one_task(
    client: teguh.Client, queue: str, app_conn: Any, db: Any
) -> None:
    result = client.spawn_task(queue, "t", {"a": 1}, conn=app_conn)
    results = client.spawn_tasks(queue, [{"task_name": "u"}], conn=app_conn)
    assert count(db, queue) == 0
    app_conn.commit()
    assert count(db, queue) == 2
    claimed = {run.task_id for run in client.claim_task(queue, "w", 30, 5)}
    assert claimed == {result.task_id, results[0].task_id}


def test_an_error_with_conn_is_mapped_and_leaves_the_transaction_to_the_caller(
    client: teguh.Client, queue: str, app_conn: Any, db: Any
) -> None:
    client.spawn_task(queue, "t", conn=app_conn)
    with pytest.raises(teguh.QueueNotFound):
        client.spawn_task("missing", "t", conn=app_conn)
    assert app_conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_INERROR
    app_conn.rollback()
    assert count(db, queue) == 0


def test_client_transaction_commits_or_rolls_back(client: teguh.Client, queue: str, db: Any) -> None:
    with client.transaction() as conn:
        client.spawn_task(queue, "kept", conn=conn)
        client.emit_event(queue, "ev", 1, conn=conn)
        assert count(db, queue) == 0
    assert count(db, queue) == 1
    with pytest.raises(RuntimeError), client.transaction() as conn:
        client.spawn_task(queue, "dropped", conn=conn)
        raise RuntimeError("the request failed")
    assert count(db, queue) == 1
    # the pooled connection went back in autocommit mode
    client.spawn_task(queue, "after")
    assert count(db, queue) == 2
