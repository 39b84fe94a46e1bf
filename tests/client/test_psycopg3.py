"""`conn=` on a psycopg 3 connection: the same calls, values and errors as on psycopg2.

SQLAlchemy 2.1 maps `postgresql://` to psycopg 3 and Django prefers it, so a
caller's transaction is often a psycopg 3 one. Both binding styles are tested:
server-side (psycopg's default, SQLAlchemy's) and client-side (`ClientCursor`,
Django's default).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg2
import pytest

import teguh

from .conftest import ts


@pytest.fixture(params=["server-binding", "client-binding"])
def pg3(request: pytest.FixtureRequest, dsn: str) -> Iterator[psycopg.Connection]:
    """A psycopg 3 connection on the test's database, in a transaction (autocommit off)."""
    factory = psycopg.ClientCursor if request.param == "client-binding" else psycopg.Cursor
    conn = psycopg.connect(dsn, cursor_factory=factory)
    try:
        yield conn
    finally:
        conn.close()


def test_spawn_commits_and_rolls_back_with_the_callers_transaction(
    client: teguh.Client, queue: str, pg3: psycopg.Connection, db: Any
) -> None:
    kept = client.spawn_task(queue, "work", {"n": 1}, conn=pg3)
    assert isinstance(kept.task_id, str) and kept.created is True
    assert db.all(f"select count(*) from teguh.t_{queue}") == [(0,)]  # not committed yet
    pg3.commit()
    lost = client.spawn_task(queue, "work", {"n": 2}, conn=pg3)
    batch = client.spawn_tasks(queue, [{"task_name": "a"}, {"task_name": "b", "priority": 3}], conn=pg3)
    assert all(isinstance(s.task_id, str) for s in batch)
    pg3.rollback()
    assert db.all(f"select task_id::text, params from teguh.t_{queue}") == [(kept.task_id, {"n": 1})]
    with pytest.raises(teguh.TaskNotFound):
        client.get_task_result(queue, lost.task_id)


def test_emit_event_commits_and_rolls_back_with_the_callers_transaction(
    client: teguh.Client, queue: str, pg3: psycopg.Connection, db: Any
) -> None:
    client.emit_event(queue, "gone", {"x": 1}, conn=pg3)
    pg3.rollback()
    client.emit_event(queue, "kept", {"x": [1, "two", None]}, conn=pg3)
    pg3.commit()
    assert db.all(f"select event_name, payload from teguh.e_{queue}") == [("kept", {"x": [1, "two", None]})]


def test_app_and_task_spawns_take_a_psycopg3_connection(
    client: teguh.Client, queue: str, pg3: psycopg.Connection, db: Any
) -> None:
    app = teguh.App(client=client, queue=queue)

    @app.task("greet", max_attempts=2)
    def greet(params: Any) -> None:
        pass

    by_task = greet.spawn({"n": 1}, conn=pg3)
    by_app = app.spawn_task("greet", {"n": 2}, conn=pg3)
    pg3.rollback()
    assert db.all(f"select count(*) from teguh.t_{queue}") == [(0,)]
    by_task = greet.spawn({"n": 1}, conn=pg3)
    by_app = app.spawn_task("greet", {"n": 2}, conn=pg3)
    pg3.commit()
    assert db.all(f"select task_id::text, max_attempts from teguh.t_{queue} order by task_id") == [
        (by_task.task_id, 2),
        (by_app.task_id, 2),
    ]


def test_get_task_result_matches_the_psycopg2_answer(
    client: teguh.Client, queue: str, pg3: psycopg.Connection
) -> None:
    spawned = client.spawn_task(queue, "work", {"n": 1})
    [run] = client.claim_task(queue, "w", 60)
    client.complete_run(queue, run.run_id, {"done": ["ok", 1.5]})
    result = client.get_task_result(queue, spawned.task_id, conn=pg3)
    assert result == client.get_task_result(queue, spawned.task_id)
    assert isinstance(result.task_id, str) and result.result == {"done": ["ok", 1.5]}


def test_the_run_calls_answer_as_on_psycopg2(
    client: teguh.Client, queue: str, pg3: psycopg.Connection
) -> None:
    """Every `conn=` call a handler's own transaction could make, with psycopg2's value types."""
    first = client.spawn_task(queue, "work", {"n": 1}, max_attempts=3, headers={"h": 1}, conn=pg3)
    [run] = client.claim_task(queue, "w", 60, conn=pg3)
    assert isinstance(run.run_id, str) and run.task_id == first.task_id
    assert run.params == {"n": 1} and run.headers == {"h": 1} and run.max_attempts == 3
    client.extend_claim(queue, run.run_id, 30, conn=pg3)
    assert client.extend_claims(queue, [run.run_id], 30, conn=pg3) == {run.run_id: "ok"}
    client.set_checkpoint(queue, first.task_id, "s1", {"v": 1}, run.run_id, conn=pg3)
    assert client.get_checkpoints(queue, first.task_id, run.run_id, conn=pg3) == {"s1": {"v": 1}}
    suspend, wake = client.sleep_run(queue, run.run_id, "nap", duration=0.25, conn=pg3)
    assert suspend is True and wake.tzinfo is not None
    assert client.next_due(queue, conn=pg3) == wake
    pg3.commit()
    assert client.get_task_result(queue, first.task_id).state == "sleeping"

    second = client.spawn_task(queue, "other", conn=pg3)
    pg3.commit()
    [run2] = [r for r in client.claim_task(queue, "w", 60) if r.task_id == second.task_id]
    client.fail_run(queue, run2.run_id, {"type": "Boom"}, retry_at=ts(0), conn=pg3)
    client.cancel_task(queue, second.task_id, conn=pg3)
    retried = client.retry_task(queue, second.task_id, spawn_new=True, conn=pg3)
    assert isinstance(retried.task_id, str) and retried.task_id != second.task_id
    assert client.get_task_result(queue, second.task_id, conn=pg3).state == "cancelled"
    assert client.ticker(queue, conn=pg3) == 0
    assert client.cleanup_tasks(queue, 0, conn=pg3) == 1  # the cancelled task
    pg3.commit()
    with pytest.raises(teguh.TaskNotFound):
        client.get_task_result(queue, second.task_id)
    assert client.list_queues(conn=pg3) == [queue]


def test_errors_map_to_teguh_classes(client: teguh.Client, queue: str, pg3: psycopg.Connection) -> None:
    with pytest.raises(teguh.QueueNotFound) as caught:
        client.spawn_task("no_such_queue", "work", conn=pg3)
    assert caught.value.queue == "no_such_queue" and caught.value.pgcode == "TG002"
    assert isinstance(caught.value.__cause__, psycopg.Error)
    pg3.rollback()
    with pytest.raises(teguh.TaskNotFound):
        client.cancel_task(queue, "0190b6f1-0000-7000-8000-000000000000", conn=pg3)
    pg3.rollback()
    with pytest.raises(teguh.TaskNotFound):  # raised by the client itself, passed through
        client.get_task_result(queue, "0190b6f1-0000-7000-8000-000000000000", conn=pg3)
    pg3.rollback()
    with pytest.raises(psycopg.errors.SyntaxError):  # no teguh class: the driver's own error
        client._run("probe", lambda cur: cur.execute("select from"), conn=pg3)


def test_a_lost_psycopg3_connection_is_connection_lost(client: teguh.Client, queue: str, dsn: str) -> None:
    conn = psycopg.connect(dsn)
    conn.close()
    with pytest.raises(teguh.ConnectionLost):
        client.spawn_task(queue, "work", conn=conn)


def test_a_missing_schema_is_reported_on_psycopg3_too(empty_dsn: str) -> None:
    with (
        teguh.Client(empty_dsn) as client,
        psycopg.connect(empty_dsn) as conn,
        pytest.raises(teguh.SchemaNotInstalled),
    ):
        client.spawn_task("jobs", "work", conn=conn)


def test_the_callers_connection_keeps_its_own_loaders(
    client: teguh.Client, queue: str, pg3: psycopg.Connection
) -> None:
    client.spawn_task(queue, "work", conn=pg3)
    with pg3.cursor() as cur:
        cur.execute(f"select task_id, params from teguh.t_{queue}")
        task_id, _ = cur.fetchone()
    assert isinstance(task_id, uuid.UUID)  # teguh's str loader stayed on its own cursor


def test_driver_detection() -> None:
    from teguh import _drivers

    assert not _drivers.is_psycopg3_connection(object())
    assert _drivers.is_driver_error(psycopg2.OperationalError())
    assert _drivers.is_driver_error(psycopg.OperationalError())
    assert not _drivers.is_driver_error(ValueError())
    assert teguh.errors.sqlstate(psycopg.errors.UniqueViolation()) == "23505"
    assert teguh.errors.sqlstate(ValueError()) is None
