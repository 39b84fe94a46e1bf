"""spawn_task / spawn_tasks: rows written, options, delayed spawn, idempotency keys."""

from __future__ import annotations

import threading
import uuid

import psycopg2
import pytest
from teguh_engine_helpers import BASE, Engine, ts


def test_spawn_returns_a_new_task(eng):  # A1
    row = eng.spawn("noop", {"x": 1})
    assert row["created"] is True
    assert isinstance(row["task_id"], str) and uuid.UUID(row["task_id"])
    assert row["attempt"] == 1
    assert row["run_id"] is None  # runs are created at claim


def test_spawn_writes_a_pending_task_and_a_dispatch_row(eng):
    eng.at(5)
    row = eng.spawn(
        "send",
        {"to": "a@b.c"},
        headers={"trace": "abc"},
        retry_strategy={"kind": "fixed", "base_seconds": 5},
        max_attempts=4,
        cancellation={"max_delay": 100},
    )
    task = eng.task(row["task_id"])
    assert task["task_name"] == "send"
    assert task["params"] == {"to": "a@b.c"}
    assert task["headers"] == {"trace": "abc"}
    assert task["retry_strategy"] == {"kind": "fixed", "base_seconds": 5}
    assert task["max_attempts"] == 4
    assert task["cancellation"] == {"max_delay": 100}
    assert task["state"] == "pending"
    assert task["enqueued_at"] == ts(5)
    assert task["first_started_at"] is None and task["finished_at"] is None
    p = eng.pending_row(row["task_id"])
    assert p is not None and p["attempt"] == 1
    assert p["available_at"] <= ts(5)
    assert eng.count("r") == 0


def test_claim_hands_back_what_was_spawned(eng):  # A2 (first half)
    spawned = eng.spawn(
        "ping",
        {"val": 42},
        headers={"h": 1},
        retry_strategy={"kind": "exponential", "base_seconds": 2},
        max_attempts=7,
    )
    run = eng.claim_one()
    assert run["task_id"] == spawned["task_id"]
    assert run["task_name"] == "ping"
    assert run["params"] == {"val": 42}
    assert run["headers"] == {"h": 1}
    assert run["retry_strategy"] == {"kind": "exponential", "base_seconds": 2}
    assert run["max_attempts"] == 7
    assert run["attempt"] == 1
    assert run["wake_event"] is None and run["event_payload"] is None
    assert run["run_id"] is not None and run["run_id"] != spawned["run_id"]


def test_delayed_spawn_waits_and_is_claimed_as_attempt_1(eng):  # A19, difference 1
    row = eng.spawn("later", {}, available_at=ts(500))
    assert row["created"] is True
    task = eng.task(row["task_id"])
    assert task["state"] == "pending"
    assert task["available_at"] == ts(500)
    assert eng.pending_row(row["task_id"]) is None  # no p_ row until due
    assert eng.claim() == []
    eng.at(499)
    assert eng.claim() == []
    eng.at(500)
    run = eng.claim_one()
    assert run["task_id"] == row["task_id"]
    assert run["attempt"] == 1
    eng.complete(run["run_id"])
    assert eng.result(row["task_id"])["attempts"] == 1


def test_available_at_in_the_past_is_ready_now(eng):
    eng.at(100)
    row = eng.spawn("t", available_at=ts(10))
    assert eng.pending_row(row["task_id"]) is not None
    assert eng.claim_one()["task_id"] == row["task_id"]


def test_idempotency_key_returns_the_existing_task(eng):  # A4
    first = eng.spawn("order", {"v": 1}, idempotency_key="order-123")
    second = eng.spawn("order", {"v": 2}, idempotency_key="order-123", max_attempts=9)
    assert first["created"] is True
    assert second["created"] is False
    assert second["task_id"] == first["task_id"]
    assert second["run_id"] is None
    assert eng.count("t") == 1
    task = eng.task(first["task_id"])
    assert task["params"] == {"v": 1}  # a hit changes nothing
    assert task["max_attempts"] == 25  # the queue's default, not the second spawn's 9
    assert eng.count("p") == 1


def test_idempotency_key_is_shared_across_task_names(eng):
    first = eng.spawn("a", idempotency_key="shared")
    second = eng.spawn("b", idempotency_key="shared")
    assert second["task_id"] == first["task_id"] and second["created"] is False
    assert eng.task(first["task_id"])["task_name"] == "a"


def test_different_or_missing_keys_make_distinct_tasks(eng):
    ids = {
        eng.spawn("t")["task_id"],
        eng.spawn("t")["task_id"],
        eng.spawn("t", idempotency_key="k1")["task_id"],
        eng.spawn("t", idempotency_key="k2")["task_id"],
    }
    assert len(ids) == 4


def test_idempotency_key_is_scoped_to_its_queue(db):
    db.fake_now(BASE)
    a, b = Engine(db, "qa"), Engine(db, "qb")
    a.create()
    b.create()
    ta = a.spawn("t", idempotency_key="same")
    tb = b.spawn("t", idempotency_key="same")
    assert ta["created"] is True and tb["created"] is True
    assert ta["task_id"] != tb["task_id"]


def test_idempotency_key_persists_after_completion(eng):
    first = eng.spawn("t", idempotency_key="once")
    run = eng.claim_one()
    eng.complete(run["run_id"], {"ok": True})
    again = eng.spawn("t", idempotency_key="once")
    assert again["created"] is False and again["task_id"] == first["task_id"]
    assert eng.claim() == []
    assert eng.state(first["task_id"]) == "completed"


def test_idempotency_hit_on_a_running_task_does_not_requeue_it(eng):
    first = eng.spawn("t", idempotency_key="busy")
    run = eng.claim_one()
    again = eng.spawn("t", idempotency_key="busy")
    assert again["task_id"] == first["task_id"] and again["created"] is False
    assert eng.pending_row(first["task_id"]) is None
    assert eng.claim() == []
    assert eng.lease(run["run_id"]) is not None


def test_max_attempts_null_takes_the_queue_default(eng):
    assert eng.task(eng.spawn("t", max_attempts=None)["task_id"])["max_attempts"] == 25
    assert eng.task(eng.spawn("t")["task_id"])["max_attempts"] == 25


def test_max_attempts_0_means_unlimited(eng):
    row = eng.spawn("t", max_attempts=0)
    assert eng.task(row["task_id"])["max_attempts"] is None
    for attempt in range(1, 8):
        run = eng.claim_one()
        assert run["attempt"] == attempt
        eng.fail(run["run_id"])
    assert eng.state(row["task_id"]) == "pending"


def test_spawn_tasks_returns_rows_in_input_order(eng):
    items = [
        {"task_name": "a", "params": {"i": 0}},
        {"task_name": "b", "params": {"i": 1}, "max_attempts": 2, "headers": {"x": 1}},
        {"task_name": "c", "params": {"i": 2}, "available_at": ts(60).isoformat()},
        {"task_name": "d", "params": {"i": 3}, "priority": 5},
    ]
    rows = eng.spawn_many(items)
    assert len(rows) == 4
    assert all(r["created"] is True and r["attempt"] == 1 and r["run_id"] is None for r in rows)
    assert len({r["task_id"] for r in rows}) == 4
    for item, row in zip(items, rows, strict=False):
        task = eng.task(row["task_id"])
        assert task["task_name"] == item["task_name"]
        assert task["params"] == item["params"]
    assert eng.task(rows[1]["task_id"])["max_attempts"] == 2
    assert eng.task(rows[1]["task_id"])["headers"] == {"x": 1}
    assert eng.pending_row(rows[2]["task_id"]) is None
    assert eng.count("p") == 3
    claimed = eng.claim(qty=10)
    assert claimed[0]["task_name"] == "d"  # priority 5 first
    assert {r["task_name"] for r in claimed} == {"a", "b", "d"}


def test_spawn_tasks_with_idempotency_hits(eng):
    existing = eng.spawn("t", {"old": True}, idempotency_key="k1")
    rows = eng.spawn_many(
        [
            {"task_name": "t", "params": {}, "idempotency_key": "k0"},
            {"task_name": "t", "params": {"new": True}, "idempotency_key": "k1"},
            {"task_name": "t", "params": {}},
        ]
    )
    assert [r["created"] for r in rows] == [True, False, True]
    assert rows[1]["task_id"] == existing["task_id"]
    assert eng.task(existing["task_id"])["params"] == {"old": True}
    assert eng.count("t") == 3


def test_spawn_tasks_large_batch(eng):
    items = [{"task_name": "bulk", "params": {"i": i}} for i in range(2000)]
    rows = eng.spawn_many(items)
    assert len(rows) == 2000 and all(r["created"] for r in rows)
    assert eng.count("t") == 2000 and eng.count("p") == 2000
    ids = [r["task_id"] for r in rows]
    params = dict(eng.sql.all(f"select task_id::text, (params->>'i')::int from {eng.table('t')}"))
    assert [params[i] for i in ids] == list(range(2000))


def test_priority_orders_claims(eng):
    low = eng.spawn("low", priority=-1)
    mid = eng.spawn("mid")
    high = eng.spawn("high", priority=10)
    assert [eng.claim_one()["task_id"] for _ in range(3)] == [
        high["task_id"],
        mid["task_id"],
        low["task_id"],
    ]


def test_notify_done_flag_is_stored(eng):
    a = eng.spawn("t", notify_done=True)
    b = eng.spawn("t")
    assert eng.task(a["task_id"])["notify_done"] is True
    assert eng.task(b["task_id"])["notify_done"] is False


def claim_all(eng: Engine, batch: int = 7) -> list[dict]:
    """Claims until the queue is empty, a few runs at a time."""
    claimed: list[dict] = []
    while rows := eng.claim(qty=batch):
        claimed.extend(rows)
    return claimed


def test_a_batch_is_claimed_in_item_order_at_one_instant(eng):
    # Every id shares BASE's millisecond: only the counter orders them.
    rows = eng.spawn_many([{"task_name": "bulk", "params": {"i": i}} for i in range(200)])
    claimed = claim_all(eng)
    assert [r["task_id"] for r in claimed] == [r["task_id"] for r in rows]
    assert [r["params"]["i"] for r in claimed] == list(range(200))


def test_a_batch_is_claimed_in_item_order_on_the_real_clock(eng):
    eng.sql.fake_now(None)
    eng.spawn_many([{"task_name": "bulk", "params": {"i": i}} for i in range(200)])
    assert [r["params"]["i"] for r in claim_all(eng)] == list(range(200))


def test_racing_producers_are_each_claimed_in_spawn_order(eng, engine_factory):
    # Four connections spawn at once, singly and in small batches. Within
    # a millisecond their ids interleave; each producer's own tasks, and a
    # batch's items, must still come back in the order they were spawned.
    producers = [engine_factory(at=None) for _ in range(4)]
    barrier = threading.Barrier(len(producers))

    def produce(p: int, producer: Engine) -> None:
        barrier.wait()
        i = 0
        for round_ in range(30):
            if round_ % 3 == 0:
                producer.spawn_many([{"task_name": "race", "params": {"p": p, "i": i + k}} for k in range(5)])
                i += 5
            else:
                producer.spawn("race", {"p": p, "i": i})
                i += 1

    threads = [threading.Thread(target=produce, args=(p, e)) for p, e in enumerate(producers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    eng.sql.fake_now(None)
    claimed = claim_all(eng)
    assert len(claimed) == 4 * 70  # 10 batches of 5 and 20 singles each
    for p in range(4):
        mine = [r["params"]["i"] for r in claimed if r["params"]["p"] == p]
        assert mine == list(range(70)), (p, mine)


def test_a_plain_batch_takes_one_statement_and_falls_back_on_any_other_item(eng):
    """Plain items go through spawn_tasks' one-statement path; one item that is not plain sends the
    whole batch to the item-by-item path, which names it, and nothing of the batch is written."""
    rows = eng.spawn_many([{"task_name": "p", "params": {"i": 0}}, {"task_name": "p"}])
    assert [eng.task(r["task_id"])["params"] for r in rows] == [{"i": 0}, None]
    assert all(eng.task(r["task_id"])["max_attempts"] == 25 for r in rows)  # the queue's default
    assert eng.count("p") == 2
    for bad in (5, None, ["p"], {"task_name": " "}, {"task_name": "p", "params": 1, "extra": 1}):
        with pytest.raises(psycopg2.Error):
            eng.spawn_many([{"task_name": "p", "params": 1}, bad])
    assert eng.count("t") == 2 and eng.count("p") == 2
    mixed = eng.spawn_many([{"task_name": "p", "params": 1}, {"task_name": "p", "params": 2, "priority": 3}])
    assert [eng.task(r["task_id"])["priority"] for r in mixed] == [0, 3]


def _dispatch_body(db) -> str:
    return db.value(
        "select pg_get_functiondef("
        "'teguh._spawn_dispatch(text, text, jsonb, jsonb, int, boolean)'::regprocedure)"
    )


def test_spawns_reach_their_own_queue_through_the_static_dispatch(db):
    """spawn_task calls each queue's _spawn_<q> through teguh._spawn_dispatch, an IF tree over the
    queue names rebuilt whenever the set of queues changes: with enough queues for several levels,
    every spawn lands in its own queue, and a dropped queue leaves the tree."""
    names = [f"q{i:02d}" for i in range(37)] + ["a", "zz", "q05_x"]
    for q in reversed(names):  # created out of order: the tree sorts them
        db.run("select teguh.create_queue(%s)", q)
    body = _dispatch_body(db)
    assert all(f"_spawn_{q}(" in body for q in names)
    for q in names:
        db.run("select * from teguh.spawn_task(%s, 'where', %s::jsonb)", q, f'"{q}"')
    for q in names:
        assert db.all(f"select params #>> '{{}}' from teguh.t_{q}") == [(q,)], q
    db.run("select teguh.drop_queue('q05')")
    assert "_spawn_q05(" not in _dispatch_body(db) and "_spawn_q05_x(" in _dispatch_body(db)
    db.run("select * from teguh.spawn_task('q05_x', 'where', '2')")
    assert db.value("select count(*) from teguh.t_q05_x") == 2
    with pytest.raises(psycopg2.Error) as err:
        db.run("select * from teguh.spawn_task('q05', 'where', '1')")
    assert err.value.pgcode == "TG002"


def test_a_queue_the_dispatch_does_not_name_is_spawned_through_dynamic_sql(db):
    """A stale dispatch (a queue it does not name yet) is only slower: the call falls back to
    dynamic SQL. Simulated by rebuilding it while the queue's row is out of teguh.queues."""
    db.run("select teguh.create_queue('named')")
    db.run("select teguh.create_queue('unnamed')")
    db.run("create temp table saved as select * from teguh.queues where queue_name = 'unnamed'")
    db.run("delete from teguh.queues where queue_name = 'unnamed'")
    db.run("select teguh._rebuild_spawn_dispatch()")
    db.run("insert into teguh.queues select * from saved")
    assert "_spawn_unnamed(" not in _dispatch_body(db)
    row = db.dicts("select * from teguh.spawn_task('unnamed', 't', '7')")[0]
    assert row["created"] is True
    assert db.value("select params from teguh.t_unnamed where task_id = %s", row["task_id"]) == 7


def test_the_dispatch_is_not_executable_by_public(db):
    db.run("select teguh.create_queue('locked')")
    assert not db.value(
        "select has_function_privilege('public', "
        "'teguh._spawn_dispatch(text, text, jsonb, jsonb, int, boolean)', 'execute')"
    )


def test_spawn_plain_makes_the_task_spawn_task_makes(eng):
    """spawn_plain is spawn_task without options, returning the id alone: the same rows, the
    queue's default max_attempts, a dispatch row and the 'spawn' notification's effect (claimable)."""
    plain = eng.sql.value("select teguh.spawn_plain(%s, 'p', %s::jsonb)", eng.q, '{"a": 1}')
    full = eng.spawn("p", {"a": 1})
    a, b = eng.task(plain), eng.task(full["task_id"])
    skip = {"task_id", "enqueued_at"}
    assert {k: v for k, v in a.items() if k not in skip} == {k: v for k, v in b.items() if k not in skip}
    assert a["state"] == "pending" and a["max_attempts"] == 25
    assert eng.pending_row(plain) is not None
    assert eng.claim_one()["task_id"] == str(plain)


def test_spawn_plain_applies_task_type_defaults(eng):
    eng.sql.run(
        "select teguh.register_task_types(%s, %s::jsonb)",
        eng.q,
        '[{"task_name": "typed", "max_attempts": 3}]',
    )
    task_id = eng.sql.value("select teguh.spawn_plain(%s, 'typed', '1')", eng.q)
    assert eng.task(task_id)["max_attempts"] == 3


@pytest.mark.parametrize(
    ("queue", "name", "code"),
    [
        ("nope", "t", "TG002"),
        ("Bad-Name", "t", "TG001"),
        (None, "t", "TG001"),
        ("jobs", " ", "TG004"),
        ("jobs", None, "TG004"),
    ],
)
def test_spawn_plain_refuses_what_spawn_task_refuses(eng, queue, name, code):
    before = eng.count("t")
    with pytest.raises(psycopg2.Error) as err:
        eng.sql.run("select teguh.spawn_plain(%s, %s, '1')", queue, name)
    assert err.value.pgcode == code
    assert eng.count("t") == before


def test_a_batch_draws_distinct_random_bytes_for_its_ids(eng):
    """A plain batch takes its ids' random bytes from one draw for the whole batch (a
    gen_random_uuid() per four items): every item gets its own three bytes."""
    rows = eng.spawn_many([{"task_name": "b", "params": i} for i in range(1000)])
    tails = {str(r["task_id"])[-6:] for r in rows}
    assert len(tails) >= 995  # 24 random bits each: a repeat among 1,000 is a one-in-thirty event
    for n in (0, 1, 3, 4, 5, 341, 342, 343, 1000):
        assert 3 * n <= eng.sql.value("select octet_length(teguh._random_triples(%s))", n) < 3 * n + 12, n
