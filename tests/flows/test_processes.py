"""Flows across worker processes: branches overlap on two workers; a SIGKILLed flow resumes, no re-runs."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
from _support.polling import eventually

from . import flow_app
from .conftest import Q, process_log


@pytest.fixture
def flows(dsn: str) -> Any:
    app, flows = flow_app.build_app(dsn)
    app.client.create_queue(Q)
    try:
        yield flows
    finally:
        app.client.close()


def alive(proc: Any) -> None:
    if proc.poll() is not None:
        raise AssertionError(f"worker process exited with {proc.returncode}:\n{process_log(proc)}")


@pytest.mark.chaos
@pytest.mark.timeout(90)
def test_independent_branches_run_concurrently_on_two_worker_processes(dsn, flows, ledger, processes):
    # one slot and no prefetch each: the branches can only overlap if each process runs one
    procs = [processes(dsn, concurrency=1, prefetch=0, poll_interval=5) for _ in range(2)]
    flow = flows["parallel"]
    spawned = flow.spawn({"n": 1, "seconds": 1.5}, notify_done=True)

    result = flow.app.client.wait_for_result(Q, spawned.task_id, timeout=60)
    for proc in procs:
        alive(proc)
    assert result.state == "completed", result.failure
    assert result.result == {"root": {"n": 1}, "left": 2, "right": 3, "join": 5}

    ((left_pid, left_start, left_end),) = ledger.rows("left")
    ((right_pid, right_start, right_end),) = ledger.rows("right")
    overlap = min(left_end, right_end) - max(left_start, right_start)
    assert left_pid != right_pid, "both branches ran in one process"
    assert overlap > 0.75, f"the branches overlapped {overlap:.2f} s of their 1.5 s"
    assert ledger.whats().count("join") == 1


@pytest.mark.chaos
@pytest.mark.timeout(90)
def test_a_sigkilled_flow_resumes_without_rerunning_finished_steps(dsn, flows, ledger, processes):
    flow = flows["crashy"]
    spawned = flow.spawn(None, notify_done=True)
    doomed = processes(dsn, concurrency=2, claim_timeout=2, poll_interval=5, worker_id="doomed")

    def blocked() -> bool:
        alive(doomed)
        return ledger.count("condition") == 1

    # steps a and b have finished; the flow's own handler is running (blocked in c's condition)
    eventually(blocked, timeout=30)
    assert ledger.whats() == ["a", "b", "condition"]
    os.kill(doomed.pid, signal.SIGKILL)
    assert doomed.wait(10) == -signal.SIGKILL

    rescuer = processes(dsn, concurrency=2, claim_timeout=2, poll_interval=1, worker_id="rescuer")
    result = flow.app.client.wait_for_result(Q, spawned.task_id, timeout=60)
    alive(rescuer)

    assert result.state == "completed", result.failure
    assert result.result == {"a": "A", "b": "AB", "c": "ABC"}
    assert result.attempts == 2  # the killed run's lease expired: the flow ran again
    assert ledger.whats() == ["a", "b", "condition", "condition", "c"], "a finished step ran again"
