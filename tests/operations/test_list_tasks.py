"""Client.list_tasks: newest first, filters by state, name and enqueue time, keyset paging, validation."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

import teguh

from .conftest import Q, claim_one


def _ids(tasks: list[teguh.TaskInfo]) -> list[str]:
    return [t.task_id for t in tasks]


def test_newest_first_with_keyset_paging(client: teguh.Client) -> None:
    spawned = [r.task_id for r in client.spawn_tasks(Q, [{"task_name": "t", "params": i} for i in range(12)])]
    newest_first = sorted(spawned, reverse=True)
    assert _ids(client.list_tasks(Q)) == newest_first
    pages, after = [], None
    while True:
        page = client.list_tasks(Q, limit=5, after=after)
        if not page:
            break
        pages.append(_ids(page))
        after = page[-1].task_id
    assert [len(p) for p in pages] == [5, 5, 2]
    assert [i for p in pages for i in p] == newest_first


def test_rows_are_light(client: teguh.Client) -> None:
    spawned = client.spawn_task(Q, "t", {"a": 1}, headers={"h": 1}, priority=2)
    run = claim_one(client)
    client.set_checkpoint(Q, run.task_id, "s", 1, run.run_id)
    client.fail_run(Q, run.run_id, {"message": "x"}, retry_at=client.database_time(600))
    (row,) = client.list_tasks(Q)
    full = client.get_task(Q, spawned.task_id)
    assert (row.task_id, row.task_name, row.params, row.headers, row.priority) == (
        spawned.task_id,
        "t",
        {"a": 1},
        {"h": 1},
        2,
    )
    assert (row.state, row.attempts, row.failure, row.wake_at) == (
        "sleeping",
        2,
        {"message": "x"},
        full.wake_at,
    )
    assert row.steps == () and row.attempt_history == () and row.wait_step is None
    assert full.steps and full.attempt_history


def test_each_state(client: teguh.Client) -> None:
    def one(name: str, **options: object) -> str:
        return client.spawn_task(Q, name, None, **options).task_id

    failed = one("failed", max_attempts=1)
    client.fail_run(Q, claim_one(client).run_id, {"message": "boom"})
    completed = one("completed")
    client.complete_run(Q, claim_one(client).run_id, 1)
    retrying = one("retrying", retry_strategy={"kind": "fixed", "base_seconds": 600})
    client.fail_run(Q, claim_one(client).run_id, {"message": "later"})
    waiting = one("waiting")
    run = claim_one(client)
    client.await_event(Q, waiting, run.run_id, "wait", "never")  # no timeout: only a w_ row says so
    running = one("running")
    claim_one(client)
    cancelled = one("cancelled")
    client.cancel_task(Q, cancelled)
    pending = one("pending")
    delayed = one("delayed", available_at=client.database_time(3600))

    def listed(state: str) -> list[str]:
        return _ids(client.list_tasks(Q, state=state))

    assert listed("failed") == [failed]
    assert listed("completed") == [completed]
    assert listed("sleeping") == [waiting, retrying]
    assert listed("running") == [running]
    assert listed("cancelled") == [cancelled]
    assert listed("pending") == [delayed, pending]
    assert len(client.list_tasks(Q)) == 8
    # a failed task retried by hand is no longer failed
    client.retry_task(Q, failed)
    assert listed("failed") == [] and failed in listed("pending")


def test_a_hostile_task_name_is_only_a_name(client: teguh.Client) -> None:
    name = "x' or 'a'='a %s %1$s %% \\"
    hostile = client.spawn_task(Q, name, None).task_id
    client.spawn_task(Q, "x", None)
    assert _ids(client.list_tasks(Q, task_name=name)) == [hostile]
    assert _ids(client.list_tasks(Q, task_name=name, state="pending")) == [hostile]


def test_task_name_and_enqueue_time(client: teguh.Client) -> None:
    first = client.spawn_task(Q, "a", None).task_id
    middle = client.spawn_task(Q, "b", None).task_id
    last = client.spawn_task(Q, "a", None).task_id
    assert _ids(client.list_tasks(Q, task_name="a")) == [last, first]
    assert _ids(client.list_tasks(Q, task_name="a", state="pending", limit=1)) == [last]
    assert client.list_tasks(Q, task_name="zzz") == []
    at = {t.task_id: t.enqueued_at for t in client.list_tasks(Q)}
    assert _ids(client.list_tasks(Q, since=at[middle])) == [last, middle]
    assert _ids(client.list_tasks(Q, until=at[middle])) == [first]
    assert _ids(client.list_tasks(Q, since=at[middle], until=at[last])) == [middle]
    assert client.list_tasks(Q, since=at[last] + timedelta(seconds=1)) == []


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"state": "done"}, teguh.InvalidArgument),
        ({"limit": 0}, teguh.InvalidArgument),
        ({"limit": 1001}, teguh.InvalidArgument),
        ({"limit": "5"}, TypeError),
        ({"after": "nope"}, teguh.InvalidArgument),
        ({"since": datetime(2026, 1, 1)}, teguh.InvalidArgument),
        ({"until": "2026-01-01"}, TypeError),
        ({"task_name": ""}, teguh.InvalidArgument),
    ],
)
def test_bad_arguments_are_refused(client: teguh.Client, options: dict, error: type) -> None:
    with pytest.raises(error):
        client.list_tasks(Q, **options)


def test_unknown_queue(client: teguh.Client) -> None:
    with pytest.raises(teguh.QueueNotFound):
        client.list_tasks("nope")


def test_the_engine_checks_its_arguments_too(client: teguh.Client, dsn: str) -> None:
    import psycopg2

    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            with pytest.raises(psycopg2.Error, match="state must be one of"):
                cur.execute("select * from teguh.list_tasks(%s, 'done')", (Q,))
            conn.rollback()
            with pytest.raises(psycopg2.Error, match="limit must be between 1 and 1000"):
                cur.execute("select * from teguh.list_tasks(%s, p_limit => 0)", (Q,))
    finally:
        conn.close()
