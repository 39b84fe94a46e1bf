"""fail_run: retry strategies, max_attempts, explicit retry_at, max_duration."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from teguh_engine_helpers import BASE, Engine, ts


def test_retry_on_fail_until_success(eng):  # A5
    task = eng.spawn("t", retry_strategy={"kind": "fixed", "base_seconds": 0}, max_attempts=3)
    attempts = []
    for _ in range(2):
        run = eng.claim_one()
        attempts.append(run["attempt"])
        eng.fail(run["run_id"])
    run = eng.claim_one()
    attempts.append(run["attempt"])
    eng.complete(run["run_id"], {"ok": True})
    assert attempts == [1, 2, 3]
    result = eng.result(task["task_id"])
    assert result["state"] == "completed" and result["attempts"] == 3


def test_exhausted_retries_fail_the_task(eng):  # A6
    task = eng.spawn("t", retry_strategy={"kind": "fixed", "base_seconds": 0}, max_attempts=2)
    for _ in range(2):
        eng.fail(eng.claim_one()["run_id"], {"type": "Boom", "message": "bad", "extra": [1, 2]})
    result = eng.result(task["task_id"])
    assert result["state"] == "failed"
    assert result["attempts"] == 2
    assert result["failure_reason"]["type"] == "Boom"
    assert result["failure_reason"]["message"] == "bad"
    assert result["failure_reason"]["extra"] == [1, 2]
    assert result["finished_at"] == BASE
    assert eng.claim() == []
    assert eng.count("p") == 0 and eng.count("r") == 0


def test_fail_without_strategy_requeues_immediately(eng):
    task = eng.spawn("t")
    run = eng.claim_one()
    eng.fail(run["run_id"])
    row = eng.task(task["task_id"])
    assert row["state"] == "pending"
    p = eng.pending_row(task["task_id"])
    assert p is not None and p["attempt"] == 2 and p["available_at"] <= BASE
    assert eng.lease(run["run_id"]) is None
    again = eng.claim_one()
    assert again["attempt"] == 2 and again["run_id"] != run["run_id"]


def test_none_strategy_requeues_immediately(eng):
    task = eng.spawn("t", retry_strategy={"kind": "none"})
    eng.fail(eng.claim_one()["run_id"])
    assert eng.pending_row(task["task_id"]) is not None
    assert eng.claim_one()["attempt"] == 2


def test_failure_reason_is_stored(eng):
    task = eng.spawn("t")
    reason = {"type": "ValueError", "message": "nope", "traceback": "line 1\nline 2"}
    eng.fail(eng.claim_one()["run_id"], reason)
    stored = eng.task(task["task_id"])["failure_reason"]
    assert {k: stored.get(k) for k in reason} == reason


def test_explicit_retry_at_overrides_strategy(eng):
    task = eng.spawn("t", retry_strategy={"kind": "fixed", "base_seconds": 5})
    eng.fail(eng.claim_one()["run_id"], retry_at=ts(900))
    row = eng.task(task["task_id"])
    assert row["state"] == "sleeping"
    assert row["available_at"] == ts(900)
    assert eng.pending_row(task["task_id"]) is None
    eng.at(899)
    assert eng.claim() == []
    eng.at(900)
    run = eng.claim_one()
    assert run["task_id"] == task["task_id"] and run["attempt"] == 2


def test_fixed_strategy_defaults_to_60_seconds(eng):
    task = eng.spawn("t", retry_strategy={"kind": "fixed"})
    eng.fail(eng.claim_one()["run_id"])
    assert eng.task(task["task_id"])["available_at"] == ts(60)


def test_fixed_strategy_waits_base_seconds(eng):
    task = eng.spawn("t", retry_strategy={"kind": "fixed", "base_seconds": 10}, max_attempts=3)
    eng.fail(eng.claim_one()["run_id"])
    assert eng.task(task["task_id"])["available_at"] == ts(10)
    eng.at(10)
    run = eng.claim_one()
    assert run["attempt"] == 2
    eng.at(15)
    eng.fail(run["run_id"])
    assert eng.task(task["task_id"])["available_at"] == ts(25)


def test_exponential_strategy_defaults(eng):
    task = eng.spawn("t", retry_strategy={"kind": "exponential"})
    eng.fail(eng.claim_one()["run_id"])
    assert eng.task(task["task_id"])["available_at"] == ts(30)
    eng.at(30)
    eng.fail(eng.claim_one()["run_id"])
    assert eng.task(task["task_id"])["available_at"] == ts(90)  # 30 + 30*2
    eng.at(90)
    eng.fail(eng.claim_one()["run_id"])
    assert eng.task(task["task_id"])["available_at"] == ts(210)  # 90 + 30*4


def test_exponential_strategy_with_cap_and_max_attempts(eng):
    """B fail_run_exponential_strategy_and_max_attempts, adapted."""
    task = eng.spawn(
        "t",
        retry_strategy={"kind": "exponential", "base_seconds": 40, "factor": 3, "max_seconds": 90},
        max_attempts=3,
    )
    run = eng.claim_one()
    assert run["attempt"] == 1
    eng.fail(run["run_id"])
    row = eng.task(task["task_id"])
    assert row["state"] == "sleeping" and row["available_at"] == ts(40)
    eng.at(40)
    run = eng.claim_one()
    assert run["attempt"] == 2
    eng.at(50)
    eng.fail(run["run_id"])
    assert eng.task(task["task_id"])["available_at"] == ts(140)  # min(40*3, 90) after t=50
    eng.at(139)
    assert eng.claim() == []
    eng.at(140)
    run = eng.claim_one()
    assert run["attempt"] == 3
    eng.fail(run["run_id"])
    result = eng.result(task["task_id"])
    assert result["state"] == "failed" and result["attempts"] == 3


def test_retry_past_max_duration_cancels_instead(eng):
    """B retry_flow_and_cancellation, adapted."""
    task = eng.spawn(
        "t",
        retry_strategy={"kind": "fixed", "base_seconds": 30},
        max_attempts=4,
        cancellation={"max_duration": 90},
    )
    run = eng.claim_one(timeout=600)
    eng.fail(run["run_id"])
    assert eng.task(task["task_id"])["state"] == "sleeping"
    eng.at(30)
    run = eng.claim_one(timeout=600)
    assert run["attempt"] == 2
    eng.at(55)
    eng.fail(run["run_id"])  # next try at 85 < 90: allowed
    assert eng.task(task["task_id"])["state"] == "sleeping"
    eng.at(85)
    run = eng.claim_one(timeout=600)
    assert run["attempt"] == 3
    eng.at(89)
    eng.fail(run["run_id"])  # next try at 119 >= 0 + 90: cancelled
    result = eng.result(task["task_id"])
    assert result["state"] == "cancelled"
    assert result["cancelled_at"] == ts(89)
    assert eng.count("p") == 0 and eng.count("r") == 0


def test_retry_planned_exactly_at_max_duration_cancels(eng):
    task = eng.spawn(
        "t", retry_strategy={"kind": "fixed", "base_seconds": 30}, cancellation={"max_duration": 30}
    )
    eng.fail(eng.claim_one(timeout=600)["run_id"])
    assert eng.state(task["task_id"]) == "cancelled"


def test_failed_run_can_not_be_used_again(eng):
    from teguh_engine_helpers import sqlstate

    eng.spawn("t", max_attempts=5)
    run = eng.claim_one()
    eng.fail(run["run_id"])
    with sqlstate("AB002"):
        eng.fail(run["run_id"])
    with sqlstate("AB002"):
        eng.complete(run["run_id"])


def test_attempt_does_not_change_on_sleep_or_event_wake(eng):
    """Difference 1: attempt goes up on failure, expiry and manual retry only."""
    task = eng.spawn("t", max_attempts=10)
    tid = task["task_id"]
    seen = []

    run = eng.claim_one(timeout=30)
    seen.append(run["attempt"])
    eng.schedule(run["run_id"], ts(10))
    eng.at(10)
    run = eng.claim_one(timeout=30)
    seen.append(run["attempt"])
    assert eng.sleep(run["run_id"], "nap", duration=10)["should_suspend"] is True
    eng.at(20)
    run = eng.claim_one(timeout=30)
    seen.append(run["attempt"])
    assert eng.await_event(tid, run["run_id"], "w", "ev")["should_suspend"] is True
    eng.emit("ev", 1)
    run = eng.claim_one(timeout=30)
    seen.append(run["attempt"])
    assert eng.await_event(tid, run["run_id"], "w2", "ev2", timeout=5)["should_suspend"] is True
    eng.at(26)
    run = eng.claim_one(timeout=30)
    seen.append(run["attempt"])
    assert seen == [1, 1, 1, 1, 1]

    eng.fail(run["run_id"])  # failure: +1
    run = eng.claim_one(timeout=30)
    assert run["attempt"] == 2
    eng.at(100)  # lease expired: +1
    run = eng.claim_one(timeout=30)
    assert run["attempt"] == 3
    eng.schedule(run["run_id"], ts(110))
    eng.at(110)
    run = eng.claim_one(timeout=30)
    assert run["attempt"] == 3
    eng.complete(run["run_id"])
    assert eng.result(tid)["attempts"] == 3


def test_max_attempts_counts_failures_only(eng):
    task = eng.spawn("t", max_attempts=1)
    run = eng.claim_one()
    for i in range(3):
        eng.schedule(run["run_id"], ts(i + 1))
        eng.at(i + 1)
        run = eng.claim_one()
        assert run["attempt"] == 1
    eng.complete(run["run_id"])
    assert eng.state(task["task_id"]) == "completed"


@pytest.mark.slow
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    base=st.integers(min_value=1, max_value=100),
    factor=st.integers(min_value=1, max_value=4),
    cap=st.one_of(st.none(), st.integers(min_value=1, max_value=500)),
    failures=st.integers(min_value=1, max_value=4),
)
def test_exponential_delay_property(db, base, factor, cap, failures):
    db.fake_now(BASE)
    e = Engine(db, "prop")
    db.run("select teguh.drop_queue('prop')")
    e.create()
    strategy = {"kind": "exponential", "base_seconds": base, "factor": factor}
    if cap is not None:
        strategy["max_seconds"] = cap
    task = e.spawn("t", retry_strategy=strategy)
    now = 0.0
    e.at(now)
    for attempt in range(1, failures + 1):
        run = e.claim_one()
        assert run["attempt"] == attempt
        e.fail(run["run_id"])
        delay = base * factor ** (attempt - 1)
        if cap is not None:
            delay = min(delay, cap)
        assert e.task(task["task_id"])["available_at"] == ts(now + delay)
        now += delay
        e.at(now)
