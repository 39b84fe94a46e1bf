"""retry_task: in place (one more attempt, or max_attempts) and spawn_new."""

from __future__ import annotations

from teguh_engine_helpers import Cases, snapshot, sqlstate, ts


def failed_task(eng, **options):
    options.setdefault("max_attempts", 1)
    task_id, run_id = eng.start("t", {"v": 1}, **options)
    eng.fail(run_id)
    assert eng.state(task_id) == "failed"
    return task_id


def test_manual_retry_in_place(eng):  # A12
    task_id = failed_task(eng)
    eng.at(10)
    row = eng.retry(task_id)
    assert row["task_id"] == task_id
    assert row["created"] is False
    assert row["attempt"] == 2
    assert eng.state(task_id) == "pending"
    runs = eng.claim()
    assert len(runs) == 1
    assert runs[0]["task_id"] == task_id and runs[0]["attempt"] == 2
    eng.complete(runs[0]["run_id"], {"ok": True})
    result = eng.result(task_id)
    assert result["state"] == "completed" and result["attempts"] == 2


def test_retry_defaults_to_exactly_one_more_attempt(eng):
    task_id = failed_task(eng)
    eng.retry(task_id)
    eng.fail(eng.claim_one()["run_id"])
    assert eng.state(task_id) == "failed"
    assert eng.result(task_id)["attempts"] == 2


def test_retry_with_more_attempts(eng):  # B extends_attempts_on_failed_task
    task_id = failed_task(eng)
    row = eng.retry(task_id, max_attempts=3)
    assert row["created"] is False and row["attempt"] == 2
    eng.fail(eng.claim_one()["run_id"])
    assert eng.state(task_id) == "pending"
    run = eng.claim_one()
    assert run["attempt"] == 3
    eng.fail(run["run_id"])
    assert eng.state(task_id) == "failed"


def test_retry_requires_more_attempts_than_made(eng):
    task_id = failed_task(eng)
    before = snapshot(eng.sql)
    for max_attempts in (1, 0, -1):
        with sqlstate("TG004"):
            eng.retry(task_id, max_attempts=max_attempts)
        assert snapshot(eng.sql) == before


def test_retry_keeps_unlimited_attempts_unlimited(eng):
    task_id, _run_id = eng.start("t", max_attempts=0)
    eng.cancel(task_id)
    eng.retry(task_id)
    assert eng.task(task_id)["max_attempts"] is None
    for _ in range(3):
        eng.fail(eng.claim_one()["run_id"])
    assert eng.state(task_id) == "pending"


def test_retry_of_a_task_not_failed_or_cancelled_raises_tg004(eng):
    tasks = {}
    for state in ("running", "sleeping", "completed", "pending"):
        task_id = eng.spawn("t", {"state": state})["task_id"]
        if state != "pending":
            run = eng.claim(qty=5)
            assert [r["task_id"] for r in run] == [task_id]
            if state == "sleeping":
                eng.schedule(run[0]["run_id"], ts(100))
            elif state == "completed":
                eng.complete(run[0]["run_id"])
        tasks[state] = task_id
    before = snapshot(eng.sql)
    cases = Cases()
    for state, task_id in tasks.items():
        assert eng.state(task_id) == state
        for options in ({}, {"spawn_new": True}, {"max_attempts": 10}):
            with cases.case(f"{state} {options}"):
                with sqlstate("TG004") as info:
                    eng.retry(task_id, **options)
                assert state in str(info.value)
                assert snapshot(eng.sql) == before, "something was written"
    cases.verify()


def test_retry_of_a_cancelled_task(eng):  # E6
    task_id, _run_id = eng.start("t")
    eng.at(5)
    eng.cancel(task_id)
    eng.at(10)
    row = eng.retry(task_id)
    assert row["task_id"] == task_id and row["created"] is False
    result = eng.result(task_id)
    assert result["state"] == "pending"
    assert result["cancelled_at"] is None
    run = eng.claim_one()
    assert run["task_id"] == task_id
    assert run["attempt"] == 2
    eng.complete(run["run_id"])
    assert eng.state(task_id) == "completed"


def test_retry_drops_cancellation_deadlines(eng):
    task_id, _run_id = eng.start("t", cancellation={"max_duration": 30, "max_delay": 5})
    eng.at(31)
    eng.ticker()
    assert eng.state(task_id) == "cancelled"
    eng.retry(task_id)
    eng.at(1000)
    run = eng.claim_one(timeout=0)
    eng.at(5000)
    eng.ticker()
    assert eng.state(task_id) == "running"
    eng.complete(run["run_id"])
    assert eng.state(task_id) == "completed"


def test_retry_spawn_new(eng):  # A20, B spawn_new_task_with_same_inputs
    task_id, run_id = eng.start(
        "t",
        {"v": 1},
        max_attempts=1,
        headers={"h": "x"},
        retry_strategy={"kind": "fixed", "base_seconds": 3},
        idempotency_key="orig-key",
    )
    eng.checkpoint(task_id, "step", {"cached": True}, run_id)
    eng.fail(run_id)
    row = eng.retry(task_id, spawn_new=True)
    assert row["created"] is True
    assert row["task_id"] != task_id
    assert row["attempt"] == 1
    new = eng.task(row["task_id"])
    old = eng.task(task_id)
    assert new["task_name"] == old["task_name"] == "t"
    assert new["params"] == {"v": 1}
    assert new["headers"] == {"h": "x"}
    assert new["retry_strategy"] == {"kind": "fixed", "base_seconds": 3}
    assert new["max_attempts"] == 1
    assert new["idempotency_key"] is None
    assert new["state"] == "pending"
    assert old["state"] == "failed"
    run = eng.claim_one()
    assert run["task_id"] == row["task_id"] and run["attempt"] == 1
    assert eng.checkpoints(row["task_id"], run["run_id"]) == {}
    assert eng.state(task_id) == "failed"
    # the original still owns its key
    again = eng.spawn("t", idempotency_key="orig-key")
    assert again["task_id"] == task_id and again["created"] is False


def test_retry_spawn_new_of_a_cancelled_task(eng):
    task = eng.spawn("t", {"a": 1})
    eng.cancel(task["task_id"])
    row = eng.retry(task["task_id"], spawn_new=True)
    assert row["created"] is True and row["task_id"] != task["task_id"]
    assert eng.state(task["task_id"]) == "cancelled"
    assert eng.claim_one()["params"] == {"a": 1}
