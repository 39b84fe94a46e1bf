"""Client.get_task: every field of one task, its steps without a lease, its waits and attempt history."""

from __future__ import annotations

from datetime import timedelta

import psycopg2
import pytest
from _support.polling import eventually

import teguh

from .conftest import Q, claim_one


def test_a_fresh_task_has_its_inputs_and_timestamps(client: teguh.Client) -> None:
    spawned = client.spawn_task(
        Q, "send", {"to": "ada"}, headers={"traceparent": "00-x"}, priority=3, max_attempts=4
    )
    info = client.get_task(Q, spawned.task_id)
    assert isinstance(info, teguh.TaskInfo) and isinstance(info, teguh.TaskResult)
    assert (info.task_id, info.task_name, info.params, info.headers) == (
        spawned.task_id,
        "send",
        {"to": "ada"},
        {"traceparent": "00-x"},
    )
    assert (info.state, info.priority, info.attempts, info.max_attempts, info.snoozes) == (
        "pending",
        3,
        1,
        4,
        0,
    )
    assert info.enqueued_at is not None and info.first_started_at is None and info.finished_at is None
    assert (info.steps, info.attempt_history, info.claimed_by) == ((), (), None)
    assert not info.done
    # parent_task_id and progress arrive with the composition feature's columns
    assert info.parent_task_id is None and info.progress is None


def test_a_running_task_names_its_lease_holder(client: teguh.Client) -> None:
    spawned = client.spawn_task(Q, "send", None)
    run = claim_one(client, "worker-a")
    info = client.get_task(Q, spawned.task_id)
    assert (info.state, info.claimed_by) == ("running", "worker-a")
    assert info.claimed_at == info.first_started_at
    client.complete_run(Q, run.run_id, {"ok": True})
    done = client.get_task(Q, spawned.task_id)
    assert (done.state, done.result, done.claimed_by, done.done) == ("completed", {"ok": True}, None, True)
    assert done.finished_at >= done.first_started_at


def test_steps_of_a_task_without_a_lease_and_its_attempt_history(client: teguh.Client) -> None:
    spawned = client.spawn_task(Q, "pay", {"n": 1}, max_attempts=3, retry_strategy={"kind": "fixed"})
    first = claim_one(client, "worker-a")
    client.set_checkpoint(Q, first.task_id, "charge", {"charged": 10}, first.run_id)
    client.fail_run(Q, first.run_id, {"type": "ValueError", "message": "card declined"})

    info = client.get_task(Q, spawned.task_id)  # sleeping until its retry: no lease
    assert info.state == "sleeping" and info.claimed_by is None
    (step,) = info.steps
    assert (step.name, step.value, step.status, step.kind) == ("charge", {"charged": 10}, "committed", "step")
    (attempt,) = info.attempt_history
    assert (attempt.attempt, attempt.run_id, attempt.worker_id, attempt.final) == (
        1,
        first.run_id,
        "worker-a",
        False,
    )
    assert attempt.reason == {"type": "ValueError", "message": "card declined"}
    assert attempt.started_at <= attempt.ended_at
    assert info.wake_at is not None and info.wait_step is None  # waits to retry


def test_attempts_until_the_task_fails_for_good(client: teguh.Client) -> None:
    spawned = client.spawn_task(Q, "flaky", None, max_attempts=3, retry_strategy={"kind": "none"})
    for n, worker in enumerate(("w1", "w2", "w3"), start=1):
        run = claim_one(client, worker)
        assert run.attempt == n
        client.fail_run(Q, run.run_id, {"type": "IOError", "message": f"try {n}"})
    info = client.get_task(Q, spawned.task_id)
    assert info.state == "failed" and info.failure == {"type": "IOError", "message": "try 3"}
    history = info.attempt_history
    assert [(a.attempt, a.worker_id, a.reason["message"], a.final) for a in history] == [
        (1, "w1", "try 1", False),
        (2, "w2", "try 2", False),
        (3, "w3", "try 3", True),
    ]
    assert history[0].ended_at <= history[1].started_at


def test_a_non_retryable_failure_is_a_final_attempt(client: teguh.Client) -> None:
    spawned = client.spawn_task(Q, "strict", None, max_attempts=5)
    run = claim_one(client, "w9")
    client.fail_run(Q, run.run_id, {"type": "BadInput", "message": "no"}, retryable=False)
    (attempt,) = client.get_task(Q, spawned.task_id).attempt_history
    assert attempt.final and attempt.worker_id == "w9"
    assert attempt.reason == {"type": "BadInput", "message": "no", "non_retryable": True}


def test_a_lease_expiry_is_recorded_with_the_worker_that_lost_it(client: teguh.Client) -> None:
    spawned = client.spawn_task(Q, "slow", None, retry_strategy={"kind": "none"})
    run = claim_one(client, "doomed-worker", claim_timeout=1)

    def recovered() -> tuple[teguh.AttemptInfo, ...]:
        client.ticker(Q)
        return client.get_task(Q, spawned.task_id).attempt_history

    (attempt,) = eventually(recovered, timeout=15, interval=0.2)
    assert (attempt.attempt, attempt.run_id, attempt.worker_id) == (1, run.run_id, "doomed-worker")
    assert attempt.reason["type"] == "$ClaimTimeout" and "doomed-worker" in attempt.reason["message"]
    assert "expired" in attempt.reason["message"]
    assert client.get_task(Q, spawned.task_id).state == "pending"


def test_the_history_keeps_the_last_25_attempts(client: teguh.Client) -> None:
    spawned = client.spawn_task(Q, "loop", None, max_attempts=0, retry_strategy={"kind": "none"})
    for n in range(1, 31):
        run = claim_one(client, f"w{n}")
        client.fail_run(Q, run.run_id, {"message": str(n)})
    history = client.get_task(Q, spawned.task_id).attempt_history
    assert [a.attempt for a in history] == list(range(6, 31))


def test_waits_for_a_sleep_and_for_an_event(client: teguh.Client) -> None:
    napping = client.spawn_task(Q, "nap", None)
    run = claim_one(client)
    wake_at = client.database_time(3600)
    client.sleep_run(Q, run.run_id, "nap", wake_at=wake_at)
    info = client.get_task(Q, napping.task_id)
    assert (info.state, info.wait_step, info.awaited_event) == ("sleeping", "nap", None)
    assert abs(info.wake_at - wake_at) < timedelta(milliseconds=1)
    assert [s.kind for s in info.steps] == ["sleep"]

    waiting = client.spawn_task(Q, "approve", None)
    run = claim_one(client)
    suspended, _payload = client.await_event(
        Q, waiting.task_id, run.run_id, "wait", "approved:1", timeout=600
    )
    assert suspended
    info = client.get_task(Q, waiting.task_id)
    assert (info.state, info.awaited_event, info.wait_step) == ("sleeping", "approved:1", "wait")
    assert info.wake_at is not None and info.steps == ()  # the event's step is stored when it comes
    client.emit_event(Q, "approved:1", {"by": "grace"})
    (step,) = client.get_task(Q, waiting.task_id).steps
    assert (step.name, step.kind, step.value) == ("wait", "event", {"by": "grace"})


def test_unknown_task_and_queue(client: teguh.Client) -> None:
    with pytest.raises(teguh.TaskNotFound):
        client.get_task(Q, "0190f7c4-0000-7000-8000-000000000000")
    with pytest.raises(teguh.QueueNotFound):
        client.get_task("nope", "0190f7c4-0000-7000-8000-000000000000")
    with pytest.raises(teguh.InvalidArgument):
        client.get_task(Q, "not-a-uuid")


def test_cleanup_deletes_the_attempt_history_with_the_task(client: teguh.Client, dsn: str) -> None:
    spawned = client.spawn_task(Q, "gone", None, max_attempts=1)
    client.fail_run(Q, claim_one(client).run_id, {"message": "x"})
    assert len(client.get_task(Q, spawned.task_id).attempt_history) == 1
    assert client.cleanup_tasks(Q, ttl=0) == 1
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(f"select count(*) from teguh.a_{Q}")
        assert cur.fetchone()[0] == 0
    conn.close()


def test_drop_queue_drops_the_history_table(client: teguh.Client, dsn: str) -> None:
    client.drop_queue(Q)
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("select to_regclass(%s)", (f"teguh.a_{Q}",))
        assert cur.fetchone()[0] is None
    conn.close()
