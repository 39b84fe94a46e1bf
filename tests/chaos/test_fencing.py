"""Fencing: a worker whose lease expired and was taken over commits nothing.

The zombie is a real worker process frozen with SIGSTOP past its lease; a
rescuer takes the task over and finishes it; SIGCONT then lets the zombie make
its late writes, which are all refused (`LeaseLost`).
"""

from __future__ import annotations

import signal
from typing import Any

import pytest

import teguh

from . import harness

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(120)]


def test_every_run_scoped_call_of_a_taken_over_run_is_refused(chaos_dsn: str) -> None:
    """The engine's side, through the client: each late call raises LeaseLost and writes nothing."""
    client = teguh.Client(chaos_dsn)
    try:
        (task_id,) = harness.spawn_steps(chaos_dsn, 1)
        (zombie,) = client.claim_task("jobs", "zombie", claim_timeout=1)
        harness.query(chaos_dsn, "update teguh.r_jobs set claim_expires_at = now() - interval '1 s'")
        (taker,) = client.claim_task("jobs", "taker", claim_timeout=30)
        assert taker.task_id == zombie.task_id and taker.run_id != zombie.run_id
        before = harness.query(chaos_dsn, "select state, attempts, result from teguh.t_jobs")
        late = [
            lambda: client.set_checkpoint("jobs", task_id, "s0", 1, zombie.run_id, extend_claim_by=30),
            lambda: client.complete_run("jobs", zombie.run_id, {"zombie": True}),
            lambda: client.fail_run("jobs", zombie.run_id, {"type": "X", "message": "late"}),
            lambda: client.extend_claim("jobs", zombie.run_id, 30),
            lambda: client.schedule_run("jobs", zombie.run_id, taker_wake()),
        ]
        for call in late:
            with pytest.raises(teguh.LeaseLost):
                call()
        assert client.extend_claims("jobs", [zombie.run_id, taker.run_id], 30) == {
            zombie.run_id: "lost",
            taker.run_id: "ok",
        }
        assert harness.query(chaos_dsn, "select state, attempts, result from teguh.t_jobs") == before
        assert harness.value(chaos_dsn, "select count(*) from effects") == 0
        outcomes = harness.query(
            chaos_dsn,
            "select run_id::text, outcome from teguh.complete_runs('jobs', %s::uuid[], %s::jsonb[])",
            [zombie.run_id, taker.run_id],
            ['{"by": "zombie"}', '{"by": "taker"}'],
        )
        assert dict(outcomes) == {zombie.run_id: "lost", taker.run_id: "ok"}
        assert harness.query(chaos_dsn, "select run_id::text, result from completions") == [
            (taker.run_id, {"by": "taker"})
        ]
    finally:
        client.close()


def taker_wake() -> Any:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc)


def test_sigstopped_worker_past_its_lease_commits_nothing_after_sigcont(
    chaos_dsn: str, procs: Any, in_process_worker: Any
) -> None:
    (task_id,) = harness.spawn_steps(chaos_dsn, 1, seconds=1.0)
    zombie = procs(
        chaos_dsn, {"claim_timeout": 2, "concurrency": 1, "poll_interval": 1, "worker_id": "zombie"}
    )
    # freeze it once s0 ran: it is then committing s0 or inside s1's body
    harness.wait_until(lambda: ("s0", 1) in harness.executions(chaos_dsn, task_id), 60, what="s0 ran")
    zombie.signal(signal.SIGSTOP)
    try:
        zombie_run = harness.value(chaos_dsn, "select last_run_id::text from teguh.t_jobs")
        rescuer = in_process_worker(chaos_dsn, claim_timeout=2, poll_interval=1, worker_id="rescuer")
        harness.wait_until(lambda: harness.not_terminal(chaos_dsn) == 0, 60, what="rescued")
        rescuer.stop()
    finally:
        zombie.signal(signal.SIGCONT)
    state, attempts, result, last_run = harness.query(
        chaos_dsn, "select state, attempts, result, last_run_id::text from teguh.t_jobs"
    )[0]
    assert (state, attempts) == ("completed", 2)
    assert last_run != zombie_run
    failure = harness.value(chaos_dsn, "select failure_reason->>'type' from teguh.t_jobs")
    assert failure == "$ClaimTimeout"

    # the zombie wakes up: its step body may finish, but its checkpoint write is refused
    harness.wait_until(lambda: "lost its lease" in zombie.log() or "no longer holds" in zombie.log(), 30)
    assert zombie.alive(), zombie.log()
    assert harness.value(chaos_dsn, "select count(*) from effects where run_id = %s::uuid", zombie_run) <= 1
    assert harness.query(chaos_dsn, "select run_id::text, result from completions") == [(last_run, result)]
    assert harness.query(chaos_dsn, "select result from teguh.t_jobs") == [(result,)], "the result stayed"
    assert harness.query(chaos_dsn, "select count(*) from teguh.r_jobs") == [(0,)], "no lease was extended"
    # the effects the zombie committed before its freeze are the ones the rescuer reused
    committed = [r[0] for r in harness.query(chaos_dsn, "select state from effects order by step")]
    assert result == {"steps": committed}

    # its slot was freed: alone now, it runs a new task
    (fresh,) = harness.spawn_steps(chaos_dsn, 1)
    harness.wait_until(lambda: harness.not_terminal(chaos_dsn) == 0, 60, what="fresh task by the zombie")
    pids = harness.query(chaos_dsn, "select distinct pid from executions where task_id = %s::uuid", fresh)
    assert pids == [(zombie.pid,)]
    assert zombie.alive()
