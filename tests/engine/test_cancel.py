"""cancel_task and the cancellation policies (max_delay, max_duration)."""

from __future__ import annotations

from teguh_engine_helpers import RUN_SCOPED, Cases, sqlstate, ts


def test_cancel_pending_task(eng):  # A11
    task = eng.spawn("t")
    eng.at(3)
    eng.cancel(task["task_id"])
    assert eng.claim() == []
    result = eng.result(task["task_id"])
    assert result["state"] == "cancelled"
    assert result["cancelled_at"] == ts(3)
    assert result["finished_at"] == ts(3)
    assert eng.pending_row(task["task_id"]) is None


def test_cancel_running_task(eng):
    task_id, run_id = eng.start("t")
    eng.at(4)
    eng.cancel(task_id)
    result = eng.result(task_id)
    assert result["state"] == "cancelled" and result["cancelled_at"] == ts(4)
    assert eng.lease(run_id) is None
    assert eng.leases_of(task_id) == []
    with sqlstate("AB001"):
        eng.complete(run_id)
    assert eng.state(task_id) == "cancelled"


def test_cancel_sleeping_task_on_event(eng):
    task_id, run_id = eng.start("t")
    eng.await_event(task_id, run_id, "s", "ev", timeout=300)
    eng.cancel(task_id)
    assert eng.state(task_id) == "cancelled"
    assert eng.waits_of(task_id) == []
    eng.at(400)
    assert eng.ticker() == 0
    assert eng.claim() == []
    assert eng.state(task_id) == "cancelled"


def test_cancel_scheduled_and_delayed_tasks(eng):
    delayed = eng.spawn("later", available_at=ts(100))["task_id"]
    task_id, run_id = eng.start("t")
    eng.schedule(run_id, ts(50))
    eng.cancel(delayed)
    eng.cancel(task_id)
    eng.at(200)
    assert eng.ticker() == 0
    assert eng.claim(qty=5) == []
    assert eng.state(delayed) == "cancelled" and eng.state(task_id) == "cancelled"
    assert eng.next_due() is None


def test_cancel_is_idempotent_and_keeps_the_first_cancelled_at(eng):
    task = eng.spawn("t")
    eng.at(1)
    eng.cancel(task["task_id"])
    eng.at(10)
    eng.cancel(task["task_id"])
    assert eng.result(task["task_id"])["cancelled_at"] == ts(1)


def test_cancel_completed_task_is_a_noop(eng):
    task_id, run_id = eng.start("t")
    eng.complete(run_id, {"ok": True})
    before = eng.task(task_id)
    eng.at(5)
    eng.cancel(task_id)
    after = eng.task(task_id)
    assert after == before
    assert after["state"] == "completed" and after["cancelled_at"] is None


def test_cancel_failed_task_is_a_noop(eng):
    task_id, run_id = eng.start("t", max_attempts=1)
    eng.fail(run_id)
    before = eng.task(task_id)
    eng.cancel(task_id)
    assert eng.task(task_id) == before
    assert before["state"] == "failed" and before["cancelled_at"] is None


def test_cancel_unknown_task(eng):
    import uuid

    missing = str(uuid.uuid4())
    with sqlstate("TG003") as info:
        eng.cancel(missing)
    assert "not found" in str(info.value).lower()


def test_cancelled_run_is_refused_everywhere_with_ab001(eng):
    """B cancel_prevents_checkpoint_writes / await_event / extend_claim."""
    task_id, run_id = eng.start("t")
    eng.cancel(task_id)
    calls = {
        "complete_run": lambda: eng.complete(run_id),
        "fail_run": lambda: eng.fail(run_id),
        "schedule_run": lambda: eng.schedule(run_id, ts(60)),
        "sleep_run": lambda: eng.sleep(run_id, "nap", duration=60),
        "set_task_checkpoint_state": lambda: eng.checkpoint(task_id, "s", 1, run_id),
        "extend_claim": lambda: eng.extend(run_id, 30),
        "await_event": lambda: eng.await_event(task_id, run_id, "w", "ev"),
        "get_task_checkpoint_states": lambda: eng.checkpoints(task_id, run_id),
    }
    assert set(calls) == set(RUN_SCOPED)
    cases = Cases()
    for name, call in calls.items():
        with cases.case(name):
            with sqlstate("AB001") as info:
                call()
            assert "cancel" in str(info.value).lower()
    cases.verify()
    assert eng.state(task_id) == "cancelled"
    assert eng.get_checkpoint(task_id, "s") is None


def test_max_delay_cancels_a_task_not_started_in_time(eng):
    task = eng.spawn("t", cancellation={"max_delay": 60})
    eng.at(59)
    assert eng.ticker() == 0
    assert eng.state(task["task_id"]) == "pending"
    eng.at(61)
    eng.ticker()
    result = eng.result(task["task_id"])
    assert result["state"] == "cancelled"
    assert result["cancelled_at"] == ts(61)
    assert eng.pending_row(task["task_id"]) is None
    assert eng.claim() == []


def test_max_delay_does_not_apply_once_started(eng):
    task = eng.spawn("t", cancellation={"max_delay": 60})
    run = eng.claim_one(timeout=0)
    eng.at(1000)
    eng.ticker()
    assert eng.state(task["task_id"]) == "running"
    eng.complete(run["run_id"])
    assert eng.state(task["task_id"]) == "completed"


def test_max_delay_on_a_delayed_spawn(eng):
    task = eng.spawn("t", available_at=ts(100), cancellation={"max_delay": 60})
    eng.at(100)
    assert eng.claim() == []
    assert eng.state(task["task_id"]) == "cancelled"


def test_max_duration_cancels_a_running_task(eng):
    task = eng.spawn("t", cancellation={"max_duration": 90})
    eng.at(10)
    run = eng.claim_one(timeout=0)
    eng.at(99)
    eng.ticker()
    assert eng.state(task["task_id"]) == "running"
    eng.at(101)
    eng.ticker()
    assert eng.state(task["task_id"]) == "cancelled"
    with sqlstate("AB001"):
        eng.complete(run["run_id"])


def test_max_duration_cancels_a_sleeping_task(eng):
    task = eng.spawn("t", cancellation={"max_duration": 90})
    run = eng.claim_one()
    eng.sleep(run["run_id"], "long", duration=3600)
    eng.at(91)
    eng.ticker()
    assert eng.state(task["task_id"]) == "cancelled"
    eng.at(3600)
    assert eng.claim() == []


def test_max_duration_counts_from_first_start_not_enqueue(eng):
    task = eng.spawn("t", cancellation={"max_duration": 90})
    eng.at(1000)
    run = eng.claim_one(timeout=0)
    eng.at(1080)
    eng.ticker()
    assert eng.state(task["task_id"]) == "running"
    eng.complete(run["run_id"], 1)
    assert eng.state(task["task_id"]) == "completed"


def test_cancel_with_notify_done_removes_every_row(eng):
    task_id, run_id = eng.start("t", notify_done=True)
    eng.checkpoint(task_id, "kept", 1, run_id)
    eng.cancel(task_id)
    assert eng.leases_of(task_id) == [] and eng.waits_of(task_id) == []
    assert eng.pending_row(task_id) is None
    # checkpoints stay until cleanup
    assert eng.get_checkpoint(task_id, "kept")["state"] == 1
