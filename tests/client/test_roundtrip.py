"""Every Client method against a real database: what goes in comes back out."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import teguh

from .conftest import Q


def later(seconds: float) -> datetime:
    """A wall-clock moment `seconds` from now (fake times must not precede real spawns)."""
    return datetime.now(timezone.utc) + timedelta(seconds=seconds)


# -- queues ---------------------------------------------------------------------


def test_queue_round_trip(client: teguh.Client) -> None:
    assert client.list_queues() == []
    client.create_queue("beta")
    client.create_queue("alpha")
    client.create_queue("alpha")  # idempotent
    assert client.list_queues() == ["alpha", "beta"]
    client.drop_queue("alpha")
    client.drop_queue("never_existed")  # no-op
    assert client.list_queues() == ["beta"]


def test_longest_queue_name_is_accepted(client: teguh.Client) -> None:
    name = "q" * 55
    client.create_queue(name)
    assert client.list_queues() == [name]
    assert client.spawn_task(name, "t").created


# -- spawning -------------------------------------------------------------------


def test_spawn_task_stores_every_option(client: teguh.Client, queue: str, db: Any) -> None:
    when = later(3600)
    result = client.spawn_task(
        queue,
        "send-email",
        {"to": "a@b.c"},
        headers={"trace": "abc"},
        retry_strategy=teguh.Exponential(10, 3.0, 600),
        max_attempts=5,
        cancellation={"max_delay": 30.5, "max_duration": timedelta(minutes=2)},
        idempotency_key="welcome:42",
        available_at=when,
        notify_done=True,
        priority=7,
    )
    assert isinstance(result, teguh.SpawnResult)
    assert result.created is True and result.run_id is None and result.attempt == 1
    row = db.dicts(f"select * from teguh.t_{queue} where task_id = %s", result.task_id)[0]
    assert row["task_name"] == "send-email"
    assert row["params"] == {"to": "a@b.c"}
    assert row["headers"] == {"trace": "abc"}
    assert row["retry_strategy"] == {
        "kind": "exponential",
        "base_seconds": 10,
        "factor": 3,
        "max_seconds": 600,
        "jitter": 0.1,  # Exponential's default
    }
    assert row["max_attempts"] == 5
    assert row["cancellation"] == {"max_delay": 31, "max_duration": 120}  # whole seconds, rounded up
    assert row["idempotency_key"] == "welcome:42"
    assert row["priority"] == 7
    assert row["notify_done"] is True
    assert row["available_at"] == when
    assert row["state"] == "pending"


def test_spawn_task_defaults(client: teguh.Client, queue: str, db: Any) -> None:
    result = client.spawn_task(queue, "noop")
    row = db.dicts(f"select * from teguh.t_{queue} where task_id = %s", result.task_id)[0]
    assert row["params"] is None
    assert row["headers"] is None and row["retry_strategy"] is None
    assert row["max_attempts"] == 25  # the queue's default_max_attempts
    assert row["notify_done"] is False and row["priority"] == 0


@pytest.mark.parametrize(
    ("strategy", "stored"),
    [
        (teguh.Fixed(5), {"kind": "fixed", "base_seconds": 5}),
        (teguh.NoRetry(), {"kind": "none"}),
        ({"kind": "fixed", "base_seconds": 2.5}, {"kind": "fixed", "base_seconds": 2.5}),
        (
            {"kind": "exponential"},
            {"kind": "exponential", "base_seconds": 30, "factor": 2, "max_seconds": None},
        ),
    ],
)
def test_spawn_task_retry_strategies(
    client: teguh.Client, queue: str, db: Any, strategy: Any, stored: dict[str, Any]
) -> None:
    result = client.spawn_task(queue, "t", retry_strategy=strategy)
    assert (
        db.value(f"select retry_strategy from teguh.t_{queue} where task_id = %s", result.task_id) == stored
    )


def test_idempotency_key_returns_the_existing_task(client: teguh.Client, queue: str, db: Any) -> None:
    first = client.spawn_task(queue, "t", {"n": 1}, idempotency_key="order-123")
    second = client.spawn_task(queue, "other", {"n": 2}, idempotency_key="order-123")
    assert first.created and not second.created
    assert second.task_id == first.task_id
    assert db.value(f"select count(*) from teguh.t_{queue}") == 1


def test_spawn_tasks_in_input_order(client: teguh.Client, queue: str, db: Any) -> None:
    client.spawn_task(queue, "dup", idempotency_key="k")
    results = client.spawn_tasks(
        queue,
        [
            {"task_name": "a", "params": {"i": 0}},
            {"task_name": "b", "params": [1], "priority": 3, "max_attempts": 2},
            {"task_name": "c", "idempotency_key": "k"},
            {"task_name": "d", "retry_strategy": teguh.Fixed(1), "available_at": later(60)},
        ],
    )
    assert [r.created for r in results] == [True, True, False, True]
    names = db.all(f"select task_id::text, task_name, params from teguh.t_{queue}")
    by_id = {task_id: (name, params) for task_id, name, params in names}
    assert by_id[results[0].task_id] == ("a", {"i": 0})
    assert by_id[results[1].task_id] == ("b", [1])
    assert by_id[results[2].task_id][0] == "dup"
    assert client.spawn_tasks(queue, []) == []


# -- claiming and finishing runs --------------------------------------------------


def test_claim_returns_every_field(client: teguh.Client, queue: str) -> None:
    assert client.claim_task(queue, "w", 30, 5) == []
    spawned = client.spawn_task(
        queue, "ping", {"val": 42}, headers={"h": 1}, retry_strategy=teguh.Fixed(0), max_attempts=3
    )
    (run,) = client.claim_task(queue, "w", claim_timeout=30, qty=5)
    assert isinstance(run, teguh.ClaimedRun)
    assert run.task_id == spawned.task_id and run.run_id != spawned.task_id
    assert (run.attempt, run.task_name, run.params, run.headers) == (1, "ping", {"val": 42}, {"h": 1})
    assert run.retry_strategy == {"kind": "fixed", "base_seconds": 0}
    assert run.max_attempts == 3
    assert run.wake_event is None and run.event_payload is None


def test_claim_timeout_rounds_up_to_whole_seconds(client: teguh.Client, queue: str, db: Any) -> None:
    client.spawn_task(queue, "t")
    (run,) = client.claim_task(queue, "w", claim_timeout=0.2)
    lease = db.value(
        f"select claim_expires_at - claimed_at from teguh.r_{queue} where run_id = %s", run.run_id
    )
    assert lease == timedelta(seconds=1)


def test_claim_timeout_zero_never_expires(client: teguh.Client, queue: str, db: Any) -> None:
    client.spawn_task(queue, "t")
    (run,) = client.claim_task(queue, "w", claim_timeout=0)
    assert db.value(f"select claim_expires_at from teguh.r_{queue} where run_id = %s", run.run_id) is None


def test_complete_run_stores_the_result(client: teguh.Client, claimed: Any) -> None:
    run = claimed()
    client.complete_run(Q, run.run_id, {"ok": True, "items": [1, 2]})
    result = client.get_task_result(Q, run.task_id)
    assert isinstance(result, teguh.TaskResult)
    assert result.state == "completed" and result.done
    assert result.attempts == 1
    assert result.result == {"ok": True, "items": [1, 2]}
    assert result.failure is None and result.cancelled_at is None
    assert result.finished_at is not None and result.finished_at.tzinfo is not None


def test_complete_twice_raises_lease_lost(client: teguh.Client, claimed: Any) -> None:
    run = claimed()
    client.complete_run(Q, run.run_id)
    with pytest.raises(teguh.LeaseLost) as info:
        client.complete_run(Q, run.run_id, {"late": True})
    assert info.value.queue == Q and info.value.run_id == run.run_id
    assert info.value.pgcode == "AB002"
    assert "CONTEXT" not in str(info.value)
    assert client.get_task_result(Q, run.task_id).result is None


def test_fail_run_retries_then_fails(client: teguh.Client, queue: str) -> None:
    spawned = client.spawn_task(queue, "flaky", retry_strategy=teguh.NoRetry(), max_attempts=2)
    reason = {"type": "ValueError", "message": "boom", "traceback": "..."}
    (run,) = client.claim_task(queue, "w")
    client.fail_run(queue, run.run_id, reason)
    (run2,) = client.claim_task(queue, "w")
    assert run2.attempt == 2 and run2.task_id == spawned.task_id
    client.fail_run(queue, run2.run_id, reason)
    result = client.get_task_result(queue, spawned.task_id)
    assert (result.state, result.attempts) == ("failed", 2)
    assert result.failure == reason


def test_fail_run_with_retry_at_sleeps_until_then(client: teguh.Client, claimed: Any, db: Any) -> None:
    run = claimed(retry_strategy=teguh.NoRetry())
    when = later(600)
    client.fail_run(Q, run.run_id, {"type": "E"}, retry_at=when)
    state, available_at = db.one(
        f"select state, available_at from teguh.t_{Q} where task_id = %s", run.task_id
    )
    assert state == "sleeping" and available_at == when
    assert client.claim_task(Q, "w") == []
    assert client.next_due(Q) == when


def test_schedule_run_and_wake_with_the_database_clock(client: teguh.Client, claimed: Any, db: Any) -> None:
    run = claimed()
    wake = later(300)
    client.schedule_run(Q, run.run_id, wake)
    assert client.get_task_result(Q, run.task_id).state == "sleeping"
    assert client.claim_task(Q, "w") == []
    db.fake_now(wake + timedelta(seconds=1))
    assert client.ticker(conn=db.conn) == 1
    (again,) = client.claim_task(Q, "w", conn=db.conn)
    assert again.task_id == run.task_id and again.run_id != run.run_id
    assert again.attempt == 1  # a wake-up is not a new attempt


def test_sleep_run(client: teguh.Client, claimed: Any, db: Any) -> None:
    run = claimed()
    should_suspend, wake = client.sleep_run(Q, run.run_id, "nap", duration=timedelta(seconds=90))
    assert should_suspend is True
    assert isinstance(wake, datetime) and wake.tzinfo is not None
    assert client.get_task_result(Q, run.task_id).state == "sleeping"
    db.fake_now(wake + timedelta(milliseconds=1))
    (again,) = client.claim_task(Q, "w", conn=db.conn)
    assert client.sleep_run(Q, again.run_id, "nap", duration=90, conn=db.conn) == (False, wake)
    assert client.get_checkpoints(Q, again.task_id, again.run_id, conn=db.conn) == {}  # sleeps not listed


def test_sleep_run_until_a_past_moment_does_not_suspend(client: teguh.Client, claimed: Any) -> None:
    run = claimed()
    when = datetime.now(timezone.utc) - timedelta(seconds=5)
    assert client.sleep_run(Q, run.run_id, "nap", wake_at=when) == (False, when)
    client.complete_run(Q, run.run_id)  # the lease was kept


def test_checkpoints_round_trip(client: teguh.Client, claimed: Any, db: Any) -> None:
    run = claimed()
    client.set_checkpoint(Q, run.task_id, "fetch", {"rows": 3}, run.run_id)
    client.set_checkpoint(Q, run.task_id, "none", None, run.run_id)
    client.set_checkpoint(Q, run.task_id, "fetch", {"rows": 99}, run.run_id)  # first write wins
    assert client.get_checkpoints(Q, run.task_id, run.run_id) == {"fetch": {"rows": 3}, "none": None}


def test_set_checkpoint_extends_the_lease(client: teguh.Client, claimed: Any, db: Any) -> None:
    run = claimed()
    expiry = f"select claim_expires_at from teguh.r_{Q} where run_id = %s"
    before = db.value(expiry, run.run_id)
    client.set_checkpoint(Q, run.task_id, "a", 1, run.run_id, extend_claim_by=0)  # 0: unchanged
    assert db.value(expiry, run.run_id) == before
    db.fake_now(later(1000))
    client.set_checkpoint(Q, run.task_id, "b", 2, run.run_id, extend_claim_by=0.5, conn=db.conn)
    assert db.value(expiry, run.run_id) == db.value("select teguh.current_time()") + timedelta(seconds=1)


def test_await_then_emit(client: teguh.Client, claimed: Any) -> None:
    run = claimed()
    assert client.await_event(Q, run.task_id, run.run_id, "wait-ship", "order.shipped") == (True, None)
    assert client.get_task_result(Q, run.task_id).state == "sleeping"
    client.emit_event(Q, "order.shipped", {"tracking": "ABC123"})
    client.emit_event(Q, "order.shipped", {"tracking": "ignored"})  # first write wins
    (again,) = client.claim_task(Q, "w")
    assert again.wake_event == "order.shipped" and again.event_payload == {"tracking": "ABC123"}
    assert client.await_event(Q, again.task_id, again.run_id, "wait-ship", "order.shipped") == (
        False,
        {"tracking": "ABC123"},
    )
    assert client.get_checkpoints(Q, again.task_id, again.run_id) == {"wait-ship": {"tracking": "ABC123"}}


def test_emit_event_says_whether_it_was_the_first(client: teguh.Client, queue: str, db: Any) -> None:
    at = later(5)
    db.fake_now(at)
    first = client.emit_event(Q, "approved:order-1", {"by": "grace"}, conn=db.conn)
    assert first == teguh.EmitResult(first=True, emitted_at=at, payload_unchanged=True)
    assert first  # truthy: this emit was the first
    db.fake_now(later(60))
    same = client.emit_event(Q, "approved:order-1", {"by": "grace"}, conn=db.conn)
    assert same == teguh.EmitResult(first=False, emitted_at=at, payload_unchanged=True)
    assert not same
    other = client.emit_event(Q, "approved:order-1", {"by": "linus"}, conn=db.conn)
    assert (other.first, other.emitted_at, other.payload_unchanged) == (False, at, False)
    # another order's approval is another event
    assert client.emit_event(Q, "approved:order-2", {"by": "linus"}, conn=db.conn).first


def test_emit_before_await_returns_at_once(client: teguh.Client, queue: str, claimed: Any) -> None:
    client.emit_event(Q, "ready", None)  # a null payload is an ordinary emitted value
    run = claimed()
    assert client.await_event(Q, run.task_id, run.run_id, "s", "ready") == (False, None)


def test_await_timeout_raises_event_timeout(client: teguh.Client, claimed: Any, db: Any) -> None:
    run = claimed()
    assert client.await_event(Q, run.task_id, run.run_id, "s", "never", timeout=0.3) == (True, None)
    db.fake_now(later(30))
    (again,) = client.claim_task(Q, "w", conn=db.conn)
    with pytest.raises(teguh.EventTimeout) as info:
        client.await_event(Q, again.task_id, again.run_id, "s", "never", timeout=1, conn=db.conn)
    assert isinstance(info.value, TimeoutError)
    assert info.value.task_id == again.task_id
    assert client.get_checkpoints(Q, again.task_id, again.run_id, conn=db.conn) == {}


# -- cancel, retry, leases --------------------------------------------------------


def test_cancel_pending_task(client: teguh.Client, queue: str) -> None:
    spawned = client.spawn_task(queue, "t")
    client.cancel_task(queue, spawned.task_id)
    client.cancel_task(queue, spawned.task_id)  # idempotent
    assert client.claim_task(queue, "w") == []
    result = client.get_task_result(queue, spawned.task_id)
    assert result.state == "cancelled" and result.cancelled_at is not None


def test_cancelled_run_raises_cancelled(client: teguh.Client, claimed: Any) -> None:
    run = claimed()
    client.cancel_task(Q, run.task_id)
    for call in (
        lambda: client.extend_claim(Q, run.run_id, 30),
        lambda: client.set_checkpoint(Q, run.task_id, "s", 1, run.run_id),
        lambda: client.complete_run(Q, run.run_id),
    ):
        with pytest.raises(teguh.Cancelled) as info:
            call()
        assert not isinstance(info.value, Exception)  # a control-flow signal
        assert info.value.pgcode == "AB001"


def test_retry_task_in_place(client: teguh.Client, queue: str) -> None:
    spawned = client.spawn_task(queue, "t", max_attempts=1)
    (run,) = client.claim_task(queue, "w")
    client.fail_run(queue, run.run_id, {"type": "E"})
    assert client.get_task_result(queue, spawned.task_id).state == "failed"
    retried = client.retry_task(queue, spawned.task_id)
    assert retried == teguh.SpawnResult(spawned.task_id, None, 2, False)
    (run2,) = client.claim_task(queue, "w")
    assert (run2.task_id, run2.attempt) == (spawned.task_id, 2)


def test_retry_task_spawn_new_and_max_attempts(client: teguh.Client, queue: str) -> None:
    spawned = client.spawn_task(queue, "t", {"v": 1}, max_attempts=1)
    (run,) = client.claim_task(queue, "w")
    client.fail_run(queue, run.run_id, {"type": "E"})
    with pytest.raises(teguh.InvalidArgument):
        client.retry_task(queue, spawned.task_id, max_attempts=1)  # must exceed the attempts made
    fresh = client.retry_task(queue, spawned.task_id, spawn_new=True, max_attempts=4)
    assert fresh.created and fresh.task_id != spawned.task_id and fresh.attempt == 1
    assert client.get_task_result(queue, spawned.task_id).state == "failed"
    (run2,) = client.claim_task(queue, "w")
    assert (run2.task_id, run2.params, run2.max_attempts) == (fresh.task_id, {"v": 1}, 4)


def test_retry_of_a_pending_task_is_invalid(client: teguh.Client, queue: str) -> None:
    spawned = client.spawn_task(queue, "t")
    with pytest.raises(teguh.InvalidArgument, match="pending"):
        client.retry_task(queue, spawned.task_id)


def test_extend_claim(client: teguh.Client, claimed: Any, db: Any) -> None:
    run = claimed()
    db.fake_now(later(20))
    client.extend_claim(Q, run.run_id, timedelta(seconds=45), conn=db.conn)
    expiry = db.value(f"select claim_expires_at from teguh.r_{Q} where run_id = %s", run.run_id)
    assert expiry == db.value("select teguh.current_time()") + timedelta(seconds=45)


def test_extend_claims_reports_each_run(client: teguh.Client, queue: str) -> None:
    client.spawn_tasks(queue, [{"task_name": "a"}, {"task_name": "b"}])
    ok, gone = client.claim_task(queue, "w", 30, 2)
    client.cancel_task(queue, gone.task_id)
    unknown = "00000000-0000-7000-8000-000000000000"
    outcomes = client.extend_claims(queue, [ok.run_id, gone.run_id, unknown], 30)
    assert outcomes == {ok.run_id: "ok", gone.run_id: "cancelled", unknown: "lost"}
    assert client.extend_claims(queue, [], 30) == {}


def test_get_task_result_of_unknown_task(client: teguh.Client, queue: str) -> None:
    unknown = "00000000-0000-7000-8000-000000000000"
    with pytest.raises(teguh.TaskNotFound) as info:
        client.get_task_result(queue, unknown)
    assert info.value.task_id == unknown and info.value.queue == queue


# -- time -------------------------------------------------------------------------


def test_next_due(client: teguh.Client, queue: str) -> None:
    assert client.next_due(queue) is None
    when = later(120)
    client.spawn_task(queue, "t", available_at=when)
    assert client.next_due(queue) == when


def test_ticker_wakes_due_tasks_in_every_queue(client: teguh.Client, db: Any) -> None:
    for name in ("qa", "qb"):
        client.create_queue(name)
        client.spawn_task(name, "t", available_at=later(60))
    assert client.ticker() == 0
    db.fake_now(later(120))
    assert client.ticker("qa", conn=db.conn) == 1
    assert client.ticker(conn=db.conn) == 1
    assert len(client.claim_task("qb", "w")) == 1


def test_cleanup_tasks(client: teguh.Client, claimed: Any, db: Any) -> None:
    run = claimed(idempotency_key="k")
    client.complete_run(Q, run.run_id)
    assert client.cleanup_tasks(Q, ttl=3600) == 0
    db.fake_now(later(7200))
    assert client.cleanup_tasks(Q, ttl=3600, limit=10, conn=db.conn) == 1
    assert client.spawn_task(Q, "again", idempotency_key="k").created  # the key is free again
