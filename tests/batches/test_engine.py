"""Batches at the SQL level: spawn, counts through every state, fail_fast, reopen, bad input."""

from __future__ import annotations

import json

import psycopg2
import pytest

Q = "bq"


@pytest.fixture
def q(db):
    db.run("select teguh.create_queue(%s)", Q)
    return db


def spawn(db, items, options=None, on_failure="continue", on_complete=None, task="item"):
    row = db.one(
        "select batch_id, task_ids::text[] from teguh.spawn_batch(%s, %s, %s::jsonb, %s::jsonb, %s, %s)",
        Q, task, json.dumps(items), json.dumps(options or {}), on_failure, on_complete,
    )
    return str(row[0]), [str(t) for t in row[1]]


def info(db, batch_id):
    return db.dicts("select * from teguh.get_batch(%s::uuid)", batch_id)[0]


def claim(db, qty=1):
    return db.dicts("select * from teguh.claim_runs(%s, 'w', 30, %s)", Q, qty)


def test_counts_through_every_state(q):
    batch_id, _ = spawn(q, [1, 2, 3, 4], options={"max_attempts": 1}, on_complete="after")
    b = info(q, batch_id)
    assert (b["total"], b["pending"], b["running"], b["state"]) == (4, 4, 0, "running")
    runs = claim(q, 3)
    assert info(q, batch_id)["running"] == 3
    q.run("select teguh.complete_run(%s, %s::uuid, '7'::jsonb)", Q, runs[0]["run_id"])
    q.run("select teguh.fail_run(%s, %s::uuid, '{\"m\": 1}'::jsonb)", Q, runs[1]["run_id"])
    q.run("select teguh.cancel_task(%s, %s::uuid)", Q, runs[2]["task_id"])
    b = info(q, batch_id)
    assert (b["pending"], b["running"], b["completed"], b["failed"], b["cancelled"]) == (1, 0, 1, 1, 1)
    assert b["finished_at"] is None and b["on_complete_task_id"] is None
    last = claim(q)
    q.run("select teguh.complete_runs(%s, array[%s::uuid], array['1'::jsonb])", Q, last[0]["run_id"])
    b = info(q, batch_id)
    assert (b["pending"], b["completed"], b["state"]) == (0, 2, "failed")
    assert b["finished_at"] is not None
    done = q.dicts(
        "select task_name, params from teguh.tasks where task_id = %s::uuid", str(b["on_complete_task_id"])
    )
    assert done[0]["task_name"] == "after"
    assert done[0]["params"] == {
        "batch_id": batch_id, "queue": Q, "task_name": "item", "state": "failed",
        "total": 4, "completed": 2, "failed": 1, "cancelled": 1,
    }


def test_fail_fast_cancels_the_rest(q):
    batch_id, _ = spawn(q, list(range(5)), options={"max_attempts": 1}, on_failure="fail_fast")
    runs = claim(q, 2)
    q.run("select teguh.fail_run(%s, %s::uuid, '\"boom\"'::jsonb)", Q, runs[0]["run_id"])
    b = info(q, batch_id)
    assert (b["failed"], b["cancelled"], b["pending"], b["running"], b["state"]) == (1, 4, 0, 0, "failed")
    assert b["finished_at"] is not None
    # the running one learns it at its next call
    out = q.value("select outcome from teguh.complete_runs(%s, array[%s::uuid], array['1'::jsonb])",
                  Q, runs[1]["run_id"])
    assert out == "cancelled"


def test_reopen_by_retry_task(q):
    batch_id, ids = spawn(q, [1], options={"max_attempts": 1})
    run = claim(q)[0]
    q.run("select teguh.fail_run(%s, %s::uuid, '1'::jsonb)", Q, run["run_id"])
    assert info(q, batch_id)["state"] == "failed"
    q.run("select * from teguh.retry_task(%s, %s::uuid)", Q, ids[0])
    b = info(q, batch_id)
    assert (b["failed"], b["pending"], b["state"], b["finished_at"]) == (0, 1, "running", None)
    run = claim(q)[0]
    q.run("select teguh.complete_run(%s, %s::uuid)", Q, run["run_id"])
    assert info(q, batch_id)["state"] == "completed"


def test_rollback_spawns_nothing(q, dsn):
    conn = psycopg2.connect(dsn)
    with conn.cursor() as cur:
        cur.execute("select * from teguh.spawn_batch(%s, 'item', '[1, 2]'::jsonb)", (Q,))
    conn.rollback()
    conn.close()
    assert q.value("select count(*) from teguh.batches") == 0
    assert q.value("select count(*) from teguh.tasks") == 0


@pytest.mark.parametrize(
    ("items", "options", "on_failure", "message"),
    [
        ([1], {}, "stop", "on_failure must be"),
        ([], {}, "continue", "at least one item"),
        ({"a": 1}, {}, "continue", "JSON array"),
        ([1], {"idempotency_key": "k"}, "continue", "idempotency_key"),
    ],
)
def test_bad_input_writes_nothing(q, items, options, on_failure, message):
    with pytest.raises(psycopg2.Error, match=message) as info_:
        spawn(q, items, options=options, on_failure=on_failure)
    assert info_.value.pgcode == "TG004"
    assert q.value("select count(*) from teguh.batches") == 0


def test_results_keyset_paging(q):
    batch_id, ids = spawn(q, list(range(7)))
    page = q.all("select task_id from teguh.batch_results(%s::uuid, 3)", batch_id)
    seen = [str(r[0]) for r in page]
    while page:
        page = q.all("select task_id from teguh.batch_results(%s::uuid, 3, %s::uuid)", batch_id, seen[-1])
        seen += [str(r[0]) for r in page]
    assert sorted(seen) == sorted(ids) and len(seen) == 7


def _commit_together(conns):
    """Commit every connection at once (threads behind a barrier); returns the errors."""
    import threading

    barrier = threading.Barrier(len(conns))
    errors = []

    def commit(conn):
        try:
            barrier.wait(10)
            conn.commit()
        except Exception as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=commit, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return errors


def test_fail_fast_reaches_an_item_retrying_in_a_concurrent_transaction(q, dsn):
    """The failing commit cannot lock the retrying item; the retry's own commit cancels it."""
    batch_id, (first, second) = spawn(q, [1, 2], options={"max_attempts": 3}, on_failure="fail_fast")
    runs = {r["task_id"]: r["run_id"] for r in claim(q, 2)}
    failing, retrying = psycopg2.connect(dsn), psycopg2.connect(dsn)
    try:
        with failing.cursor() as cur:
            cur.execute(
                "select teguh.fail_run_non_retryable(%s, %s::uuid, '1'::jsonb)", (Q, str(runs[first]))
            )
        with retrying.cursor() as cur:
            cur.execute("select teguh.fail_run(%s, %s::uuid, '2'::jsonb)", (Q, str(runs[second])))
        failing.commit()
        assert q.value("select state from teguh.batches") == "failed"
        assert q.value("select state from teguh.tasks where task_id = %s::uuid", second) == "running"
        retrying.commit()
    finally:
        failing.close()
        retrying.close()
    assert q.value("select state from teguh.tasks where task_id = %s::uuid", second) == "cancelled"
    b = info(q, batch_id)
    assert (b["failed"], b["cancelled"], b["pending"], b["state"]) == (1, 1, 0, "failed")
    assert b["finished_at"] is not None


def test_transactions_ending_items_of_two_batches_in_opposite_orders_do_not_deadlock(q, dsn):
    a, _ = spawn(q, [1, 2])
    b, _ = spawn(q, [1, 2])
    runs = claim(q, 4)
    by_batch = {}
    for r in runs:
        bid = str(q.value("select batch_id from teguh.t_bq where task_id = %s::uuid", str(r["task_id"])))
        by_batch.setdefault(bid, []).append(str(r["run_id"]))
    one, two = psycopg2.connect(dsn), psycopg2.connect(dsn)
    try:
        for conn, order in ((one, (a, b)), (two, (b, a))):
            index = 0 if conn is one else 1
            for bid in order:
                with conn.cursor() as cur:
                    cur.execute("select teguh.complete_run(%s, %s::uuid)", (Q, by_batch[bid][index]))
        assert _commit_together([one, two]) == []
    finally:
        one.close()
        two.close()
    for bid in (a, b):
        assert (info(q, bid)["completed"], info(q, bid)["state"]) == (2, "completed")


def test_plain_tasks_leave_no_batch_trace(q):
    q.run("select teguh.spawn_task(%s, 'plain', '1'::jsonb)", Q)
    run = claim(q)[0]
    q.run("select teguh.complete_run(%s, %s::uuid)", Q, run["run_id"])
    assert q.value("select batch_id from teguh.t_bq") is None
    assert q.value("select count(*) from teguh.batch_ends") == 0
    assert q.value("select count(*) from teguh.batches") == 0


def test_on_complete_not_registered_when_the_queue_has_task_types(q):
    q.run("""select teguh.register_task_types(%s, '[{"task_name": "item"}]'::jsonb)""", Q)
    with pytest.raises(psycopg2.Error, match='on_complete names task "after"') as exc:
        spawn(q, [1], on_complete="after")
    assert exc.value.pgcode == "TG004"


def test_cleanup_deletes_finished_batches_past_the_ttl(q):
    done, _ = spawn(q, [1])
    run = claim(q)[0]
    q.run("select teguh.complete_run(%s, %s::uuid)", Q, run["run_id"])
    running, _ = spawn(q, [2])
    q.fake_now("2099-01-01T00:00:00Z")
    q.value("select teguh.cleanup_tasks(%s, 60)", Q)
    assert [str(r[0]) for r in q.all("select batch_id from teguh.batches")] == [running]
    assert q.dicts("select * from teguh.get_batch(%s::uuid)", done) == []


def test_fail_fast_item_whose_lease_is_busy_gets_cancelled_by_the_next_sweep(q, dsn):
    """A heartbeat holds the running item's lease row when the batch fails: a deadline, then a sweep."""
    batch_id, (first, second) = spawn(q, [1, 2], options={"max_attempts": 1}, on_failure="fail_fast")
    runs = {r["task_id"]: r["run_id"] for r in claim(q, 2)}
    heartbeat = psycopg2.connect(dsn)
    try:
        with heartbeat.cursor() as cur:
            cur.execute("select * from teguh.extend_claims(%s, array[%s::uuid], 30)", (Q, str(runs[second])))
        q.run("select teguh.fail_run(%s, %s::uuid, '1'::jsonb)", Q, str(runs[first]))
        assert q.value("select state from teguh.tasks where task_id = %s::uuid", second) == "running"
        heartbeat.commit()
    finally:
        heartbeat.close()
    assert info(q, batch_id)["state"] == "failed" and info(q, batch_id)["finished_at"] is None
    claim(q)  # a claim runs the due sweeps
    assert q.value("select state from teguh.tasks where task_id = %s::uuid", second) == "cancelled"
    b = info(q, batch_id)
    assert (b["failed"], b["cancelled"], b["running"]) == (1, 1, 0) and b["finished_at"] is not None
