"""schedule_run and sleep_run: durable sleeps on the database clock."""

from __future__ import annotations

from datetime import timedelta

from teguh_engine_helpers import BASE, sqlstate, ts


def test_schedule_run_suspends_until_wake(eng):  # B schedule_run_moves_task...
    task = eng.spawn("t")
    run = eng.claim_one(timeout=120)
    eng.schedule(run["run_id"], ts(300))
    row = eng.task(task["task_id"])
    assert row["state"] == "sleeping"
    assert row["available_at"] == ts(300)
    assert row["wake_event"] is None
    assert eng.lease(run["run_id"]) is None
    assert eng.pending_row(task["task_id"]) is None
    assert eng.claim() == []
    eng.at(300)
    again = eng.claim_one()
    assert again["task_id"] == task["task_id"]
    assert again["run_id"] != run["run_id"]  # E2: a new run
    assert again["attempt"] == 1
    assert eng.task(task["task_id"])["state"] == "running"
    eng.complete(again["run_id"])
    assert eng.state(task["task_id"]) == "completed"


def test_sleep_and_resume_with_ticker(eng):  # A8
    task = eng.spawn("t")
    run = eng.claim_one()
    eng.schedule(run["run_id"], ts(0.5))
    assert eng.claim() == []
    eng.at(0.7)
    assert eng.ticker() >= 1
    assert eng.pending_row(task["task_id"]) is not None
    again = eng.claim_one()
    assert again["task_id"] == task["task_id"]
    eng.complete(again["run_id"])


def test_sleep_run_for_a_duration(eng):
    task = eng.spawn("t")
    run = eng.claim_one()
    eng.at(10)
    got = eng.sleep(run["run_id"], "nap", duration=60)
    assert got["should_suspend"] is True
    assert got["wake_at"] == ts(70)  # database clock, not the client's
    row = eng.task(task["task_id"])
    assert row["state"] == "sleeping" and row["available_at"] == ts(70)
    assert eng.lease(run["run_id"]) is None
    cp = eng.checkpoint_row(task["task_id"], "nap")
    assert cp is not None
    assert set(cp["state"]) == {"$teguh_sleep_until"}
    assert cp.get("kind", "sleep") == "sleep"
    eng.at(69)
    assert eng.claim() == []
    eng.at(70)
    run2 = eng.claim_one()
    assert run2["attempt"] == 1
    # resumed: the stored wake time is used, the run keeps its lease
    eng.at(75)
    again = eng.sleep(run2["run_id"], "nap", duration=60)
    assert again["should_suspend"] is False
    assert again["wake_at"] == ts(70)
    assert eng.lease(run2["run_id"]) is not None
    assert eng.task(task["task_id"])["state"] == "running"
    eng.complete(run2["run_id"], {"slept": True})
    assert eng.result(task["task_id"])["result"] == {"slept": True}


def test_sleep_run_until_a_moment(eng):
    task = eng.spawn("t")
    run = eng.claim_one()
    got = eng.sleep(run["run_id"], "until", wake_at=ts(3600))
    assert got == {"should_suspend": True, "wake_at": ts(3600)}
    assert eng.task(task["task_id"])["available_at"] == ts(3600)
    eng.at(3600)
    run2 = eng.claim_one()
    # a different wake_at on resume does not move the stored one
    again = eng.sleep(run2["run_id"], "until", wake_at=ts(7200))
    assert again == {"should_suspend": False, "wake_at": ts(3600)}


def test_fractional_durations(eng):
    eng.spawn("t")
    run = eng.claim_one()
    got = eng.sleep(run["run_id"], "short", duration=0.25)
    assert got["should_suspend"] is True
    assert got["wake_at"] == BASE + timedelta(milliseconds=250)
    eng.at(0.2)
    assert eng.claim() == []
    eng.at(0.25)
    assert len(eng.claim()) == 1


def test_sleep_in_the_past_does_not_suspend(eng):
    task = eng.spawn("t")
    eng.at(100)
    run = eng.claim_one()
    for step, kwargs in (("past", {"wake_at": ts(50)}), ("zero", {"duration": 0}), ("neg", {"duration": -5})):
        got = eng.sleep(run["run_id"], step, **kwargs)
        assert got["should_suspend"] is False, step
        assert got["wake_at"] <= ts(100)
        assert eng.lease(run["run_id"]) is not None
        assert eng.task(task["task_id"])["state"] == "running"
    eng.complete(run["run_id"])
    assert eng.state(task["task_id"]) == "completed"


def test_sleep_steps_are_not_listed_as_checkpoints(eng):
    task = eng.spawn("t")
    run = eng.claim_one()
    eng.checkpoint(task["task_id"], "real", {"v": 1}, run["run_id"])
    eng.sleep(run["run_id"], "nap", duration=5)
    eng.at(5)
    run2 = eng.claim_one()
    assert eng.checkpoints(task["task_id"], run2["run_id"]) == {"real": ({"v": 1}, "committed")}


def test_two_sleep_steps_in_one_task(eng):
    """B sleep_until_checkpoint_with_multiple_sleep_steps."""
    task = eng.spawn("t")
    run = eng.claim_one()
    assert eng.sleep(run["run_id"], "first", duration=60)["should_suspend"]
    eng.at(60)
    run = eng.claim_one()
    assert eng.sleep(run["run_id"], "first", duration=60)["should_suspend"] is False
    assert eng.sleep(run["run_id"], "second", duration=30)["should_suspend"] is True
    eng.at(90)
    run = eng.claim_one()
    assert eng.sleep(run["run_id"], "first", duration=60) == {"should_suspend": False, "wake_at": ts(60)}
    assert eng.sleep(run["run_id"], "second", duration=30) == {"should_suspend": False, "wake_at": ts(90)}
    assert eng.checkpoint_row(task["task_id"], "first") is not None
    assert eng.checkpoint_row(task["task_id"], "second") is not None
    eng.complete(run["run_id"])
    assert eng.result(task["task_id"])["attempts"] == 1


def test_sleeping_task_survives_a_failure_and_keeps_its_wake_time(eng):
    """A sleep checkpoint prevents an endless reschedule across attempts."""
    task = eng.spawn("t", max_attempts=3)
    run = eng.claim_one()
    eng.sleep(run["run_id"], "nap", duration=100)
    eng.at(100)
    run = eng.claim_one()
    eng.fail(run["run_id"])
    run = eng.claim_one()
    assert run["attempt"] == 2
    assert eng.sleep(run["run_id"], "nap", duration=100) == {"should_suspend": False, "wake_at": ts(100)}
    assert eng.task(task["task_id"])["state"] == "running"


def test_schedule_run_in_the_past_makes_the_task_ready(eng):
    task = eng.spawn("t")
    eng.at(50)
    run = eng.claim_one()
    eng.schedule(run["run_id"], ts(10))
    assert eng.lease(run["run_id"]) is None
    again = eng.claim_one()
    assert again["task_id"] == task["task_id"] and again["attempt"] == 1


def test_sleep_needs_a_live_run(eng):
    eng.spawn("t")
    run = eng.claim_one()
    eng.sleep(run["run_id"], "nap", duration=10)
    with sqlstate("AB002"):
        eng.sleep(run["run_id"], "nap", duration=10)
