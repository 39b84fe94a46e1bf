"""The acceptance scenarios, parameterised so the quick suite runs them scaled down.

Each returns its measured figures (a dict) after asserting the invariants;
`report()` prints them and appends them to the JSON-lines file named by
`CHAOS_RESULTS`, which docs/reliability.md's table is made from.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from typing import Any

from . import harness

ALL_ZERO = dict.fromkeys(harness.INVARIANTS, 0)


def report(name: str, **figures: Any) -> dict[str, Any]:
    line = {"scenario": name, **figures}
    print(f"\nCHAOS {json.dumps(line)}")
    path = os.environ.get("CHAOS_RESULTS")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(line) + "\n")
    return line


def extra_step_executions(dsn: str) -> int:
    """Step bodies run more than once (a crash between a body and its checkpoint)."""
    return harness.value(
        dsn,
        "select coalesce(sum(n - 1), 0)::int from (select count(*) n from executions"
        " where step not like '$%' group by task_id, step) x",
    )


def sigkill_chaos(
    dsn: str,
    supervise: Any,
    *,
    tasks: int,
    workers: int,
    every: float,
    duration: float,
    step_seconds: float,
    claim_timeout: int,
    concurrency: int,
    seed: int = 5,
) -> dict[str, Any]:
    """N workers under a supervisor; one SIGKILLed every `every` s for `duration` s."""
    rng = random.Random(seed)
    harness.spawn_steps(dsn, tasks, seconds=step_seconds)
    sup = supervise(
        dsn, workers, {"claim_timeout": claim_timeout, "concurrency": concurrency, "poll_interval": 5}
    )
    start = time.monotonic()
    drained_during_chaos = None
    while time.monotonic() - start < duration:
        # a fixed cadence, the point of the scenario (not synchronisation)
        time.sleep(every)
        sup.kill_random(rng)
        if drained_during_chaos is None and harness.not_terminal(dsn) == 0:
            drained_during_chaos = round(time.monotonic() - start, 1)
    chaos_end = time.monotonic()
    left_at_end = harness.not_terminal(dsn)
    harness.wait_until(
        lambda: harness.not_terminal(dsn) == 0,
        tasks * step_seconds * 3 + 60 + 3 * claim_timeout,
        interval=0.5,
        what=lambda: f"all {tasks} tasks terminal\n{sup.logs()}",
    )
    drained = time.monotonic()
    violations = harness.invariants(dsn)
    figures = report(
        "sigkill",
        seed=seed,
        tasks=tasks,
        workers=workers,
        kills=sup.kills,
        kills_while_tasks_left=sup.kills
        if drained_during_chaos is None
        else int(drained_during_chaos // every),
        restarts=sup.restarts,
        left_when_kills_stopped=left_at_end,
        drain_after_chaos_s=round(drained - chaos_end, 1),
        total_s=round(drained - start, 1),
        states=harness.states(dsn),
        extra_step_executions=extra_step_executions(dsn),
        violations=violations,
    )
    assert harness.states(dsn) == {"completed": tasks}, figures
    assert violations == ALL_ZERO, figures
    # an extra execution needs a kill between a step body and its checkpoint
    assert figures["extra_step_executions"] <= sup.kills * concurrency, figures
    return figures


def postgres_restarts(
    dsn: str, server: Any, supervise: Any, *, tasks: int, workers: int, step_seconds: float
) -> dict[str, Any]:
    """Drain `tasks` while PostgreSQL restarts twice (fast, then immediate)."""
    harness.spawn_steps(dsn, tasks, seconds=step_seconds)
    sup = supervise(dsn, workers, {"claim_timeout": 5, "concurrency": 4, "poll_interval": 5})
    start = time.monotonic()
    outages = []
    for mode, at_fraction in (("fast", 0.25), ("immediate", 0.6)):
        harness.wait_until(
            lambda f=at_fraction: _done(dsn) >= tasks * f, 300, interval=0.2, what=f"{at_fraction} done"
        )
        t0 = time.monotonic()
        server.restart(mode)
        outages.append(round(time.monotonic() - t0, 1))
    harness.wait_until(
        lambda: _done(dsn) == tasks,
        300,
        interval=0.5,
        what=lambda: f"all tasks done after restarts\n{sup.logs()}",
    )
    violations = harness.invariants(dsn)
    figures = report(
        "postgres_restart",
        tasks=tasks,
        workers=workers,
        restarts=["fast", "immediate"],
        restart_s=outages,
        worker_restarts=sup.restarts,
        total_s=round(time.monotonic() - start, 1),
        states=harness.states(dsn),
        violations=violations,
    )
    assert violations == ALL_ZERO, figures
    assert sup.restarts == 0, f"a worker process died:\n{sup.logs()}"
    assert all(wp is not None and wp.alive() for wp in sup.slots)
    return figures


def _done(dsn: str) -> int:
    try:
        return harness.value(dsn, "select count(*) from teguh.t_jobs where state = 'completed'")
    except Exception:  # the server is restarting
        return -1


def listen_backend_killed(dsn: str, procs: Any, *, rounds: int) -> dict[str, Any]:
    """Terminate the worker's LISTEN backend, spawn at once: the task must start within 1 s."""
    wp = procs(dsn, {"claim_timeout": 5, "concurrency": 2, "poll_interval": 30})
    pid_sql = "select pid from pg_stat_activity where application_name = 'teguh-listener:jobs'"
    harness.wait_until(lambda: harness.value(dsn, pid_sql), 60, what="worker listening")
    latencies = []
    for _ in range(rounds):
        old = harness.value(dsn, pid_sql)
        assert harness.value(dsn, "select pg_terminate_backend(%s)", old)
        (task,) = harness.spawn_steps(dsn, 1, n=0)
        harness.wait_until(lambda t=task: harness.executions(dsn, t), 10, interval=0.02, what="task started")
        latency = harness.value(
            dsn,
            "select extract(epoch from e.at - t.enqueued_at)::float8 from executions e join teguh.t_jobs t"
            " using (task_id) where e.task_id = %s::uuid",
            task,
        )
        latencies.append(round(latency, 3))
        harness.wait_until(
            lambda o=old: harness.value(dsn, pid_sql) not in (None, o), 10, what="listener back"
        )
    assert wp.alive(), wp.log()
    figures = report("listen_terminated", rounds=rounds, start_latency_s=latencies, max_s=max(latencies))
    assert max(latencies) < 1.0, (figures, wp.log())
    return figures


def pool_backends_terminated(dsn: str, procs: Any, *, tasks: int, rounds: int) -> dict[str, Any]:
    """pg_terminate_backend on every backend of a busy worker (pool, LISTEN, heartbeat), repeatedly."""
    harness.spawn_steps(dsn, tasks, seconds=0.05)
    wp = procs(dsn, {"claim_timeout": 5, "concurrency": 4, "poll_interval": 5})
    kill_sql = (
        "select count(pg_terminate_backend(pid)) from pg_stat_activity"
        " where application_name like 'teguh-%%' and pid <> pg_backend_pid()"
    )
    killed = []
    for i in range(rounds):
        harness.wait_until(
            lambda i=i: (
                harness.value(dsn, "select count(*) from completions") >= tasks * (i + 1) / (rounds + 2)
            ),
            120,
            interval=0.1,
        )
        killed.append(harness.value(dsn, kill_sql))
    start = time.monotonic()
    harness.wait_until(
        lambda: harness.not_terminal(dsn) == 0, 180, interval=0.3, what=lambda: f"drained\n{wp.stacks()}"
    )
    violations = harness.invariants(dsn)
    figures = report(
        "backends_terminated",
        tasks=tasks,
        rounds=rounds,
        backends_killed=killed,
        drain_after_last_s=round(time.monotonic() - start, 1),
        states=harness.states(dsn),
        violations=violations,
    )
    assert wp.alive(), wp.log()
    assert harness.states(dsn) == {"completed": tasks}, figures
    assert violations == ALL_ZERO, figures
    return figures


def sigterm_under_load(dsn: str, supervise: Any, *, tasks: int) -> dict[str, Any]:
    """SIGTERM one of two busy workers: it exits 0 in time, nothing is lost or run twice."""
    harness.spawn_steps(dsn, tasks, seconds=0.3)
    sup = supervise(
        dsn, 2, {"claim_timeout": 30, "concurrency": 4, "poll_interval": 5, "shutdown_timeout": 20}
    )
    harness.wait_until(lambda: harness.value(dsn, "select count(*) from completions") >= 8, 120, interval=0.1)
    victim = sup.slots[0]
    assert victim is not None
    t0 = time.monotonic()
    victim.signal(signal.SIGTERM)
    code = victim.wait(40)
    stopped_in = time.monotonic() - t0
    # with 30 s leases, a task it abandoned would wait 30 s: draining fast proves none was
    harness.wait_until(
        lambda: harness.not_terminal(dsn) == 0, 25, interval=0.2, what=lambda: f"drained\n{sup.logs()}"
    )
    violations = harness.invariants(dsn)
    figures = report(
        "sigterm",
        tasks=tasks,
        exit_code=code,
        stopped_in_s=round(stopped_in, 1),
        extra_step_executions=extra_step_executions(dsn),
        states=harness.states(dsn),
        violations=violations,
    )
    assert code == 0, victim.log()
    assert "stopped (0 running and" in victim.log(), victim.log()
    assert harness.states(dsn) == {"completed": tasks}, figures
    assert violations == ALL_ZERO, figures
    assert figures["extra_step_executions"] == 0, figures
    return figures


def recovery_time(dsn: str, procs: Any, in_process_worker: Any, *, claim_timeout: int) -> dict[str, Any]:
    """Seconds from a SIGKILL mid-task to the task's completion by an idle worker already running."""
    harness.spawn_steps(dsn, 1, n=2, seconds=0.5)
    doomed = procs(dsn, {"claim_timeout": claim_timeout, "concurrency": 1, "poll_interval": 30})
    harness.wait_until(lambda: harness.executions(dsn), 60, interval=0.02, what="started")
    in_process_worker(dsn, claim_timeout=claim_timeout, poll_interval=30, worker_id="rescuer")
    t0 = time.monotonic()
    doomed.kill()
    harness.wait_until(lambda: harness.not_terminal(dsn) == 0, claim_timeout + 30, interval=0.02)
    figures = report("recovery", claim_timeout=claim_timeout, recovered_s=round(time.monotonic() - t0, 2))
    assert figures["recovered_s"] < claim_timeout + 5, figures
    assert harness.invariants(dsn) == ALL_ZERO
    return figures
