"""Poison tasks that kill their worker, and handlers that never return.

* A task whose handler SIGKILLs its own process is failed by the engine
  (`$ClaimTimeout`, through the same path as a raised error) once
  `max_attempts` leases expired, instead of crash-looping the fleet.
* A handler that keeps running after its run was lost (the process was
  frozen past its lease) or cancelled (its `max_duration` passed) holds a slot
  for good; past `max_stuck_runs` the worker exits with status 3 so its
  supervisor restarts it.
"""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest

from teguh.worker import EXIT_STUCK

from . import harness

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(180)]


def test_poison_task_fails_after_max_attempts_and_healthy_tasks_finish(
    chaos_dsn: str, supervise: Any
) -> None:
    healthy = harness.spawn_steps(chaos_dsn, 30, seconds=0.02)
    (poison,) = [
        r[0]
        for r in harness.query(
            chaos_dsn,
            "select task_id::text from teguh.spawn_task('jobs', 'poison', 'null', %s::jsonb)",
            json.dumps({"max_attempts": 3, "retry_strategy": {"kind": "none"}}),
        )
    ]
    sup = supervise(chaos_dsn, 2, {"claim_timeout": 2, "concurrency": 2, "poll_interval": 1})
    harness.wait_until(lambda: harness.not_terminal(chaos_dsn) == 0, 150, what="all terminal")
    state, attempts, reason = harness.query(
        chaos_dsn, "select state, attempts, failure_reason from teguh.t_jobs where task_id = %s::uuid", poison
    )[0]
    assert (state, attempts) == ("failed", 3), reason
    assert reason["type"] == "$ClaimTimeout", reason
    assert harness.executions(chaos_dsn, poison) == [("$handler", 1), ("$handler", 2), ("$handler", 3)]
    assert sup.exits.count(-signal.SIGKILL) == 3, (sup.exits, sup.logs())
    assert harness.states(chaos_dsn) == {"completed": len(healthy), "failed": 1}
    assert harness.invariants(chaos_dsn) == dict.fromkeys(harness.INVARIANTS, 0)


def _spawn_hang(dsn: str, **options: Any) -> str:
    return harness.value(
        dsn,
        "select task_id::text from teguh.spawn_task('jobs', 'hang', %s::jsonb, %s::jsonb)",
        json.dumps({"first_only": True}),
        json.dumps(options),
    )


def test_hung_handler_of_a_frozen_worker_is_retried_and_the_worker_exits_3(
    chaos_dsn: str, procs: Any, in_process_worker: Any
) -> None:
    task = _spawn_hang(chaos_dsn)
    stuck = procs(chaos_dsn, {"claim_timeout": 2, "concurrency": 1, "poll_interval": 1, "max_stuck_runs": 1})
    harness.wait_until(lambda: harness.executions(chaos_dsn, task) == [("$handler", 1)], 60, what="hanging")
    # a frozen process (or a GIL held in C code) stops heartbeating: the lease expires
    stuck.signal(signal.SIGSTOP)
    try:
        rescuer = in_process_worker(chaos_dsn, claim_timeout=2, poll_interval=1)
        harness.wait_until(lambda: harness.not_terminal(chaos_dsn) == 0, 60, what="retried elsewhere")
        rescuer.stop()
    finally:
        stuck.signal(signal.SIGCONT)
    assert harness.query(chaos_dsn, "select state, attempts, result from teguh.t_jobs") == [
        ("completed", 2, {"attempt": 2})
    ]
    # the stuck worker learns from its heartbeat that the run is lost, then gives up its process
    assert stuck.wait(60) == EXIT_STUCK, stuck.log()
    log = stuck.log()
    assert "no longer holds its task (lease lost)" in log
    assert "slots are held by stuck handlers" in log
    assert harness.invariants(chaos_dsn) == dict.fromkeys(harness.INVARIANTS, 0)


def test_hung_handler_past_max_duration_is_cancelled_and_the_worker_exits_3(
    chaos_dsn: str, procs: Any
) -> None:
    task = _spawn_hang(chaos_dsn, cancellation={"max_duration": 2})
    (other,) = harness.spawn_steps(chaos_dsn, 1)
    stuck = procs(chaos_dsn, {"claim_timeout": 2, "concurrency": 2, "poll_interval": 1, "max_stuck_runs": 1})
    # a healthy process keeps heartbeating a hung handler; its task's deadline ends it
    assert stuck.wait(90) == EXIT_STUCK, stuck.log()
    assert (
        harness.value(chaos_dsn, "select state from teguh.t_jobs where task_id = %s::uuid", task)
        == "cancelled"
    )
    assert (
        harness.value(chaos_dsn, "select state from teguh.t_jobs where task_id = %s::uuid", other)
        == "completed"
    )
    # "lost" when the heartbeat's statement raced the cancellation: extend_claims
    # classifies with the snapshot taken before the cancel committed (engine race)
    log = stuck.log()
    assert "its task was cancelled" in log or "(lease lost)" in log, log[-3000:]
    assert "slots are held by stuck handlers" in log
