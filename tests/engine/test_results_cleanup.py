"""get_task_result and get_task_info through a task's life; cleanup by finish time."""

from __future__ import annotations

from teguh_engine_helpers import BASE, Engine, sqlstate, ts

DAY = 86400


def test_result_through_the_lifecycle(eng):
    task = eng.spawn("t")
    tid = task["task_id"]
    r = eng.result(tid)
    assert r["task_id"] == tid and r["state"] == "pending"
    assert r["result"] is None and r["failure_reason"] is None
    assert r["cancelled_at"] is None and r["finished_at"] is None
    run = eng.claim_one()
    assert eng.result(tid)["state"] == "running"
    eng.schedule(run["run_id"], ts(5))
    r = eng.result(tid)
    assert r["state"] == "sleeping" and r["result"] is None and r["finished_at"] is None
    eng.at(5)
    run = eng.claim_one()
    eng.at(7)
    eng.complete(run["run_id"], {"ok": True, "n": [1, 2]})
    r = eng.result(tid)
    assert r["state"] == "completed"
    assert r["result"] == {"ok": True, "n": [1, 2]}
    assert r["attempts"] == 1
    assert r["finished_at"] == ts(7)
    assert r["failure_reason"] is None and r["cancelled_at"] is None


def test_result_columns(eng):
    tid = eng.spawn("t")["task_id"]
    assert list(eng.result(tid)) == [
        "task_id",
        "state",
        "attempts",
        "result",
        "failure_reason",
        "cancelled_at",
        "finished_at",
        "snoozes",
    ]


def test_results_of_any_json_type_are_stored(eng):
    for value in ([1, 2], "text", 3.5, True, {"deep": {"x": [None]}}):
        task_id, run_id = eng.start("t")
        eng.complete(run_id, value)
        assert eng.result(task_id)["result"] == value


def test_complete_with_no_result(eng):
    task_id, run_id = eng.start("t")
    eng.sql.run("select teguh.complete_run(%s, %s)", eng.q, run_id)
    r = eng.result(task_id)
    assert r["state"] == "completed" and r["result"] is None
    assert eng.lease(run_id) is None


def test_failed_result_carries_the_reason(eng):
    task_id, run_id = eng.start("t", max_attempts=1)
    eng.at(3)
    eng.fail(run_id, {"type": "KeyError", "message": "k"})
    r = eng.result(task_id)
    assert r["state"] == "failed"
    assert r["failure_reason"]["type"] == "KeyError"
    assert r["result"] is None
    assert r["finished_at"] == ts(3)


def test_cancelled_result(eng):
    tid = eng.spawn("t")["task_id"]
    eng.at(2)
    eng.cancel(tid)
    r = eng.result(tid)
    assert r["state"] == "cancelled" and r["cancelled_at"] == ts(2)
    assert r["result"] is None and r["finished_at"] == ts(2)


def test_unknown_task_result(eng):
    with sqlstate("TG003"):
        eng.result("00000000-0000-7000-8000-0000000000aa")


# -- cleanup -------------------------------------------------------------------
def test_cleanup_measures_age_from_finish_time(eng):  # difference 5
    _task_id, run_id = eng.start("t")
    eng.at(10 * DAY)
    eng.complete(run_id)
    eng.at(10 * DAY + 3600)
    assert eng.cleanup(ttl=2 * DAY) == 0  # enqueued 10 days ago, finished an hour ago
    assert eng.count("t") == 1
    eng.at(12 * DAY + 60)
    assert eng.cleanup(ttl=2 * DAY) == 1
    assert eng.count("t") == 0


def test_cleanup_tasks_and_events(eng):  # B cleanup_tasks_and_events
    _task_id, run_id = eng.start("t")
    eng.at(600)
    eng.complete(run_id)
    eng.emit("ev", {"x": 1})
    eng.at(600 + 1800)
    assert eng.cleanup(ttl=3600) == 0
    assert eng.count("e") == 1
    eng.at(600 + 26 * 3600)
    assert eng.cleanup(ttl=3600) == 1
    assert eng.count("t") == 0
    assert eng.count("e") == 0


def test_cleanup_only_touches_terminal_tasks(eng):
    running_id, _ = eng.start("r", timeout=0)
    sleeping_id, sleeping_run = eng.start("s")
    eng.sleep(sleeping_run, "nap", duration=400 * DAY)
    waiting_id, waiting_run = eng.start("w")
    eng.await_event(waiting_id, waiting_run, "s", "never")
    pending = eng.spawn("p")["task_id"]
    eng.at(365 * DAY)
    assert eng.cleanup(ttl=1) == 0
    for tid in (pending, running_id, sleeping_id, waiting_id):
        assert eng.result(tid)["state"] in ("pending", "running", "sleeping")
    assert len(eng.waits_of(waiting_id)) == 1
    assert eng.checkpoint_row(sleeping_id, "nap") is not None


def test_cleanup_removes_checkpoints_waits_and_frees_the_key(eng):  # E8
    task_id, run_id = eng.start("t", idempotency_key="key-1")
    eng.checkpoint(task_id, "s1", 1, run_id)
    eng.checkpoint(task_id, "s2", 2, run_id)
    eng.complete(run_id)
    cancelled_id, cancelled_run = eng.start("c")
    eng.await_event(cancelled_id, cancelled_run, "w", "never")
    eng.cancel(cancelled_id)
    eng.at(2 * DAY)
    assert eng.cleanup(ttl=DAY) == 2
    assert eng.count("c") == 0
    assert eng.count("w") == 0
    assert eng.count("p") == 0
    assert eng.count("r") == 0
    respawned = eng.spawn("t", idempotency_key="key-1")
    assert respawned["created"] is True and respawned["task_id"] != task_id
    assert respawned["attempt"] == 1


def test_cleanup_respects_the_limit(eng):
    for i in range(5):
        eng.at(i)
        _task_id, run_id = eng.start("t", {"i": i})
        eng.complete(run_id)
    eng.at(10 * DAY)
    assert eng.cleanup(ttl=DAY, limit=2) == 2
    assert eng.count("t") == 3
    assert eng.cleanup(ttl=DAY, limit=2) == 2
    assert eng.cleanup(ttl=DAY, limit=2) == 1
    assert eng.cleanup(ttl=DAY, limit=2) == 0


def test_cleanup_defaults_to_the_queue_ttl_of_30_days(eng):
    _task_id, run_id = eng.start("t")
    eng.complete(run_id)
    eng.at(29 * DAY)
    assert eng.cleanup() == 0
    eng.at(31 * DAY)
    assert eng.cleanup() == 1


def test_cleanup_honours_fake_time_not_the_wall_clock(eng):
    # BASE is years in the past: a wall-clock cleanup would delete everything
    task_id, run_id = eng.start("t")
    eng.complete(run_id)
    eng.at(3600)
    assert eng.cleanup(ttl=DAY) == 0
    assert eng.state(task_id) == "completed"


def test_cleanup_all_queues(db):
    db.fake_now(BASE)
    a, b = Engine(db, "qa"), Engine(db, "qb")
    for e in (a, b):
        e.create()
        _task_id, run_id = e.start("t")
        e.complete(run_id)
        e.emit("ev", 1)
    c = Engine(db, "qc")
    c.create()
    c.spawn("still-pending")
    db.fake_now(ts(29 * DAY))
    rows = db.all("select queue_name, tasks_deleted, events_deleted from teguh.cleanup_all_queues()")
    assert sorted(rows) == [("qa", 0, 0), ("qb", 0, 0), ("qc", 0, 0)]
    db.fake_now(ts(31 * DAY))
    rows = db.all("select queue_name, tasks_deleted, events_deleted from teguh.cleanup_all_queues()")
    assert sorted(rows) == [("qa", 1, 1), ("qb", 1, 1), ("qc", 0, 0)]
    assert a.count("t") == 0 and b.count("t") == 0 and c.count("t") == 1


def test_cleanup_all_queues_uses_each_queues_settings(db):
    db.fake_now(BASE)
    a, b = Engine(db, "short"), Engine(db, "long")
    for e in (a, b):
        e.create()
        _task_id, run_id = e.start("t")
        e.complete(run_id)
    kind = db.value(
        "select data_type from information_schema.columns"
        " where table_schema = 'teguh' and table_name = 'queues' and column_name = 'cleanup_ttl'"
    )
    one_hour = "interval '1 hour'" if kind == "interval" else "3600"
    db.run(f"update teguh.queues set cleanup_ttl = {one_hour} where queue_name = 'short'")
    db.fake_now(ts(2 * 3600))
    rows = dict(
        (r[0], r[1]) for r in db.all("select queue_name, tasks_deleted from teguh.cleanup_all_queues()")
    )
    assert rows == {"short": 1, "long": 0}


# -- get_task_info: what a task waits for ----------------------------------------------


def _info(eng, task_id):
    rows = eng.sql.dicts("select * from teguh.get_task_info(%s, %s)", eng.q, str(task_id))
    assert len(rows) == 1, rows
    return rows[0]


def _wait(eng, task_id):
    row = _info(eng, task_id)
    return row["state"], row["wake_at"], row["awaited_event"], row["wait_step"]


def test_task_info_says_what_a_task_waits_for(eng):
    napping, nap_run = eng.start("nap")
    assert eng.sleep(nap_run, "nap", duration=90)["should_suspend"]
    assert _wait(eng, napping) == ("sleeping", ts(90), None, "nap")

    timed, timed_run = eng.start("timed")
    assert eng.await_event(timed, timed_run, "approval", "approved:1", timeout=600)["should_suspend"]
    assert _wait(eng, timed) == ("sleeping", ts(600), "approved:1", "approval")

    forever, forever_run = eng.start("forever")
    assert eng.await_event(forever, forever_run, "approval", "approved:2")["should_suspend"]
    assert _wait(eng, forever) == ("sleeping", None, "approved:2", "approval")

    # a retry delay is a sleep with no step
    retrying, retry_run = eng.start("retrying", max_attempts=3)
    eng.fail(retry_run, retry_at=ts(30))
    assert _wait(eng, retrying) == ("sleeping", ts(30), None, None)

    delayed = eng.spawn("later", available_at=ts(3600))["task_id"]
    assert _wait(eng, delayed) == ("pending", ts(3600), None, None)

    eng.emit("approved:2", {"ok": True})
    assert _wait(eng, forever) == ("pending", None, None, None)
    run = eng.claim_one()
    assert _wait(eng, run["task_id"])[1:] == (None, None, None)


def test_task_info_tells_a_sleep_after_a_retry_from_the_retry_delay(eng):
    task_id, run_id = eng.start("t", max_attempts=3)
    assert eng.sleep(run_id, "first-nap", duration=10)["should_suspend"]
    eng.at(10)
    run_id = eng.claim_one()["run_id"]
    eng.fail(run_id, retry_at=ts(20))  # the old sleep's checkpoint does not match this wake time
    assert _wait(eng, task_id) == ("sleeping", ts(20), None, None)
    eng.at(20)
    run_id = eng.claim_one()["run_id"]
    assert eng.sleep(run_id, "second-nap", duration=5)["should_suspend"]
    assert _wait(eng, task_id) == ("sleeping", ts(25), None, "second-nap")
