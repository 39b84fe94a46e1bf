"""Notifications on teguh_<queue> and teguh_done (E1, E4)."""

from __future__ import annotations

import pytest
from teguh_engine_helpers import Q, ts

CHANNEL = f"teguh_{Q}"
PAYLOADS = {"spawn", "retry", "event", "wake"}


@pytest.fixture
def listen(eng, listener_factory):
    lst = listener_factory(CHANNEL, "teguh_done")

    def got():
        return lst.collect(eng.sql)

    got()  # drain anything from the set-up
    return got


def on_queue(notes):
    return [p for ch, p in notes if ch == CHANNEL]


def done(notes):
    return [p for ch, p in notes if ch == "teguh_done"]


def test_spawn_notifies_once(eng, listen):
    eng.spawn("t")
    notes = listen()
    assert len(on_queue(notes)) == 1
    assert set(on_queue(notes)) <= PAYLOADS


def test_spawn_tasks_notifies_once_per_statement(eng, listen):
    eng.spawn_many([{"task_name": "t", "params": {"i": i}} for i in range(50)])
    assert len(on_queue(listen())) == 1


def test_delayed_spawn_does_not_notify(eng, listen):
    eng.spawn("t", available_at=ts(60))
    eng.spawn_many([{"task_name": "t", "available_at": ts(60).isoformat()}])
    assert on_queue(listen()) == []


def test_idempotency_hit_does_not_notify_spuriously(eng, listen):
    eng.spawn("t", idempotency_key="k")
    listen()
    eng.spawn("t", idempotency_key="k")
    # a hit makes nothing claimable
    assert on_queue(listen()) == []


def test_emit_that_stores_notifies_and_a_repeat_does_not(eng, listen):  # E4
    eng.emit("ev", {"a": 1})
    assert len(on_queue(listen())) == 1
    eng.emit("ev", {"a": 2})
    assert on_queue(listen()) == []


def test_emit_that_wakes_notifies(eng, listen):
    task_id, run_id = eng.start("t")
    eng.await_event(task_id, run_id, "s", "ev")
    listen()
    eng.emit("ev", 1)
    notes = on_queue(listen())
    assert len(notes) == 1 and set(notes) <= PAYLOADS


def test_ticker_that_made_work_ready_notifies(eng, listen):
    _, run_id = eng.start("t")
    eng.schedule(run_id, ts(10))
    listen()
    eng.at(5)
    assert eng.ticker() == 0
    assert on_queue(listen()) == []
    eng.at(10)
    assert eng.ticker() == 1
    notes = on_queue(listen())
    assert len(notes) == 1 and set(notes) <= PAYLOADS


def test_immediate_retry_notifies_and_delayed_does_not(eng, listen):
    eng.spawn("t")
    run = eng.claim_one()
    listen()
    eng.fail(run["run_id"])
    assert len(on_queue(listen())) == 1
    run = eng.claim_one()
    listen()
    eng.fail(run["run_id"], retry_at=ts(600))
    assert on_queue(listen()) == []


def test_manual_retry_notifies(eng, listen):
    task_id, run_id = eng.start("t", max_attempts=1)
    eng.fail(run_id)
    listen()
    eng.retry(task_id)
    assert len(on_queue(listen())) == 1


def test_completion_and_sleep_do_not_notify_the_queue(eng, listen):
    task_id, run_id = eng.start("t")
    eng.checkpoint(task_id, "s", 1, run_id)
    eng.extend(run_id, 10)
    eng.sleep(run_id, "nap", duration=10)
    eng.at(10)
    run = eng.claim_one()
    listen()
    eng.complete(run["run_id"])
    notes = listen()
    assert on_queue(notes) == []
    assert done(notes) == []  # not spawned with notify_done


def test_notify_done_on_completion(eng, listen):
    task_id, run_id = eng.start("t", notify_done=True)
    listen()
    eng.complete(run_id, 1)
    assert done(listen()) == [f"{Q}:{task_id}"]


def test_notify_done_on_final_failure_only(eng, listen):
    task_id, run_id = eng.start("t", notify_done=True, max_attempts=2)
    listen()
    eng.fail(run_id)
    assert done(listen()) == []  # retried, not terminal
    run = eng.claim_one()
    eng.fail(run["run_id"])
    assert done(listen()) == [f"{Q}:{task_id}"]


def test_notify_done_on_cancel(eng, listen):
    task = eng.spawn("t", notify_done=True)
    listen()
    eng.cancel(task["task_id"])
    assert done(listen()) == [f"{Q}:{task['task_id']}"]
    eng.cancel(task["task_id"])  # no-op: no second notification
    assert done(listen()) == []


def test_notify_done_on_policy_cancel(eng, listen):
    task = eng.spawn("t", notify_done=True, cancellation={"max_delay": 5})
    listen()
    eng.at(6)
    eng.ticker()
    assert eng.state(task["task_id"]) == "cancelled"
    assert done(listen()) == [f"{Q}:{task['task_id']}"]


def test_notifications_are_sent_at_commit_only(eng, listener_factory, sql_factory):
    lst = listener_factory(CHANNEL)
    lst.collect(eng.sql)
    other = sql_factory()
    other.run("begin")
    other.run("select * from teguh.spawn_task(%s, 't', '{}'::jsonb)", Q)
    assert on_queue(lst.collect(eng.sql)) == []
    other.run("rollback")
    assert on_queue(lst.collect(eng.sql)) == []
    assert eng.count("t") == 0
