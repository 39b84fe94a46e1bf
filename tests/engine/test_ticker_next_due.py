"""ticker() and next_due(): both on teguh.current_time()."""

from __future__ import annotations

from teguh_engine_helpers import BASE, Engine, ts


# -- ticker --------------------------------------------------------------------
def test_ticker_on_an_idle_queue_returns_zero(eng):
    assert eng.ticker() == 0
    assert eng.ticker(this_queue_only=False) == 0


def test_ticker_wakes_due_sleepers_on_fake_time(eng):
    ids = []
    for wake in (60, 60, 120):
        task_id, run_id = eng.start("t")
        eng.schedule(run_id, ts(wake))
        ids.append(task_id)
    eng.at(30)
    assert eng.ticker() == 0
    assert eng.count("p") == 0
    eng.at(60)
    assert eng.ticker() == 2
    assert {r["task_id"] for r in eng.rows("p")} == set(ids[:2])
    assert eng.ticker() == 0  # nothing new
    eng.at(500)
    assert eng.ticker() == 1
    for tid in ids:
        assert eng.task(tid)["state"] == "pending"
        assert eng.pending_row(tid)["attempt"] == 1


def test_ticker_wakes_delayed_spawns(eng):
    tid = eng.spawn("t", available_at=ts(100))["task_id"]
    eng.at(100)
    assert eng.ticker() == 1
    assert eng.pending_row(tid)["attempt"] == 1


def test_ticker_times_out_waits(eng):
    task_id, run_id = eng.start("t")
    eng.await_event(task_id, run_id, "s", "ev", timeout=10)
    eng.at(10.5)
    assert eng.ticker() == 1
    assert eng.waits_of(task_id) == []
    assert eng.get_checkpoint(task_id, "s")["status"] == "timed_out"
    run = eng.claim_one()
    got = eng.await_event(task_id, run["run_id"], "s", "ev", timeout=10)
    assert got["timed_out"] is True and got["payload_sql_null"] is True


def test_ticker_recovers_expired_leases(eng):
    a = eng.spawn("a")["task_id"]
    eng.claim_one(worker="w-a", timeout=30)
    b = eng.spawn("b", max_attempts=1)["task_id"]
    eng.claim_one(worker="w-b", timeout=30)
    eng.at(31)
    eng.ticker()
    assert eng.count("r") == 0
    assert eng.task(a)["state"] == "pending"
    assert eng.pending_row(a)["attempt"] == 2
    assert "$ClaimTimeout" in str(eng.task(a)["failure_reason"])
    assert eng.result(b)["state"] == "failed"


def test_ticker_covers_every_queue_or_one(db):
    db.fake_now(BASE)
    queues = [Engine(db, name) for name in ("qa", "qb", "qc")]
    for e in queues:
        e.create()
        _, run_id = e.start("t")
        e.schedule(run_id, ts(10))
    db.fake_now(ts(10))
    assert queues[0].ticker() == 1
    assert queues[1].count("p") == 0
    assert db.value("select teguh.ticker()") == 2
    assert all(e.count("p") == 1 for e in queues)


def test_ticker_uses_current_time_not_the_wall_clock(eng):
    # BASE is in the past: a wall-clock ticker would see this as due
    task_id, run_id = eng.start("t")
    eng.schedule(run_id, ts(3600))
    eng.at(60)
    assert eng.ticker() == 0
    assert eng.task(task_id)["state"] == "sleeping"


def test_ticker_handles_many_due_tasks(eng):
    rows = eng.spawn_many([{"task_name": "t", "available_at": ts(5).isoformat()} for _ in range(1200)])
    eng.at(5)
    assert eng.ticker() == 1200
    assert eng.count("p") == 1200
    assert {r["attempt"] for r in eng.rows("p")} == {1}
    assert len(rows) == 1200


# -- next_due ------------------------------------------------------------------
def test_next_due_is_null_when_nothing_is_due(eng):
    assert eng.next_due() is None


def test_next_due_is_null_for_work_without_a_time(eng):
    # a lease that never expires and a wait with no timeout have no due time
    eng.start("r", timeout=0)
    waiting_id, waiting_run = eng.start("w", timeout=0)
    eng.await_event(waiting_id, waiting_run, "s", "never")
    _done_id, done_run = eng.start("c", timeout=0)
    eng.complete(done_run)
    assert eng.next_due() is None


def test_next_due_of_a_delayed_task(eng):
    eng.spawn("t", available_at=ts(500))
    eng.spawn("t", available_at=ts(300))
    assert eng.next_due() == ts(300)


def test_next_due_of_a_sleeping_task(eng):
    _, run_id = eng.start("t", timeout=0)
    eng.sleep(run_id, "nap", duration=42)
    assert eng.next_due() == ts(42)


def test_next_due_of_a_wait_timeout(eng):
    task_id, run_id = eng.start("t", timeout=0)
    eng.at(5)
    eng.await_event(task_id, run_id, "s", "ev", timeout=600)
    assert eng.next_due() == ts(605)


def test_next_due_of_a_lease_expiry(eng):
    eng.spawn("t")
    eng.at(3)
    eng.claim_one(timeout=30)
    assert eng.next_due() == ts(33)
    eng.at(10)
    run = eng.rows("r")[0]
    eng.extend(run["run_id"], 100)
    assert eng.next_due() == ts(110)


def test_next_due_of_a_max_duration_deadline(eng):
    eng.spawn("t", cancellation={"max_duration": 90})
    eng.at(10)
    eng.claim_one(timeout=0)
    assert eng.next_due() == ts(100)


def test_next_due_of_a_max_delay_deadline(eng):
    eng.spawn("t", available_at=ts(100), cancellation={"max_delay": 60})
    assert eng.next_due() == ts(60)


def test_next_due_is_the_earliest_of_several(eng):
    eng.spawn("t", available_at=ts(900))
    _, run_id = eng.start("t", timeout=500)
    assert eng.next_due() == ts(500)
    eng.schedule(run_id, ts(200))
    assert eng.next_due() == ts(200)


def test_next_due_in_the_past_when_due_work_waits(eng):
    eng.spawn("t", available_at=ts(10))
    eng.at(20)
    due = eng.next_due()
    assert due is not None and due <= ts(20)
    eng.claim_one()
    assert eng.next_due() == ts(20 + 60)  # only the new lease remains


def test_next_due_and_the_server_side_wait(eng):
    eng.spawn("t", available_at=ts(30))
    eng.at(12)
    wait = eng.sql.value("select teguh.next_due(%s) - teguh.current_time()", eng.q)
    assert wait.total_seconds() == 18


def test_next_due_ignores_other_queues(db):
    db.fake_now(BASE)
    a, b = Engine(db, "qa"), Engine(db, "qb")
    a.create()
    b.create()
    a.spawn("t", available_at=ts(50))
    assert b.next_due() is None
    assert a.next_due() == ts(50)


def test_next_due_after_everything_is_done(eng):
    _task_id, run_id = eng.start("t", cancellation={"max_duration": 100})
    eng.complete(run_id)
    assert eng.next_due() is None
    other = eng.spawn("t", available_at=ts(10))["task_id"]
    eng.cancel(other)
    assert eng.next_due() is None
