"""Worker processes: SIGKILL mid-task (another worker finishes it), SIGTERM (graceful)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from teguh.app import App

from . import proc_app
from .conftest import Q, eventually, process_log


@pytest.fixture
def shared_app(dsn: str) -> Iterator[App]:
    """The app of `proc_app.py`, for spawning and for a worker in this process."""
    application = proc_app.build_app(dsn)
    application.client.create_queue(Q)
    try:
        yield application
    finally:
        application.client.close()


def _alive(proc: Any) -> None:
    if proc.poll() is not None:
        raise AssertionError(f"worker process exited with {proc.returncode}:\n{process_log(proc)}")


@pytest.mark.slow
@pytest.mark.chaos
@pytest.mark.timeout(90)
def test_sigkilled_worker_task_is_finished_by_another(
    dsn: str, shared_app: App, ledger: Any, spawn_process: Any, start_worker: Any
) -> None:
    task = shared_app.spawn_task("crashy", notify_done=True)
    proc = spawn_process(dsn, claim_timeout=2, concurrency=1, poll_interval=30, worker_id="doomed")

    def blocked() -> bool:
        _alive(proc)
        return ledger.count(task.task_id, "blocked") == 1

    eventually(blocked, timeout=30)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL

    start_worker(shared_app, claim_timeout=2, worker_id="rescuer")
    result = shared_app.client.wait_for_result(Q, task.task_id, timeout=30)
    assert result.state == "completed", result.failure
    assert result.result == {"finished_on_attempt": 2}
    assert result.attempts == 2
    assert ledger.entries(task.task_id) == [("A", 1), ("blocked", 1), ("finished", 2)], (
        "step A committed on attempt 1 and was not re-run"
    )


@pytest.mark.chaos
@pytest.mark.timeout(60)
def test_sigterm_lets_the_running_task_finish_and_exits_0(
    dsn: str, shared_app: App, ledger: Any, spawn_process: Any
) -> None:
    first = shared_app.spawn_task("slow", {"seconds": 1.0}, notify_done=True)
    second = shared_app.spawn_task("slow", {"seconds": 1.0})
    proc = spawn_process(dsn, concurrency=1, poll_interval=30, claim_timeout=30, worker_id="graceful")

    def started() -> bool:
        _alive(proc)
        return ledger.count(first.task_id, "started") == 1

    eventually(started, timeout=30)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(20) == 0, process_log(proc)
    assert "worker process exiting normally" in process_log(proc)

    result = shared_app.client.get_task_result(Q, first.task_id)
    assert (result.state, result.result, result.attempts) == ("completed", {"slept": 1.0}, 1)
    assert ledger.entries(first.task_id) == [("started", 1), ("finished", 1)]
    # a stopping worker claims nothing new
    assert shared_app.client.get_task_result(Q, second.task_id).state == "pending"
    assert ledger.entries(second.task_id) == []


@pytest.mark.chaos
@pytest.mark.timeout(60)
def test_second_sigterm_stops_now_and_releases_the_task(
    dsn: str, shared_app: App, ledger: Any, spawn_process: Any, start_worker: Any
) -> None:
    # The worker's own log says "send it again to stop now".
    task = shared_app.spawn_task("slow", {"seconds": 20.0, "first_run_only": True}, notify_done=True)
    proc = spawn_process(dsn, concurrency=1, poll_interval=30, claim_timeout=30, worker_id="impatient")

    def started() -> bool:
        _alive(proc)
        return ledger.count(task.task_id, "started") == 1

    eventually(started, timeout=30)
    os.kill(proc.pid, signal.SIGTERM)
    eventually(lambda: "send it again to stop now" in process_log(proc), timeout=10)
    os.kill(proc.pid, signal.SIGTERM)
    try:
        code = proc.wait(8)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            "a second SIGTERM did not end the process while a handler was still running:\n"
            + process_log(proc)
        ) from None
    assert code == 0, process_log(proc)
    assert "exiting now, 1 handler(s) still running" in process_log(proc)

    # released, not left to a 30 s lease: another worker takes it at once, as the
    # next attempt (the released run used its attempt: reason $Shutdown)
    released = shared_app.client.get_task_result(Q, task.task_id)
    assert (released.state, released.attempts, released.failure["type"]) == ("pending", 2, "$Shutdown")
    start_worker(shared_app, worker_id="taker")
    result = shared_app.client.wait_for_result(Q, task.task_id, timeout=5)
    assert (result.state, result.result, result.attempts) == ("completed", {"slept": 0}, 2)
    assert ledger.entries(task.task_id) == [("started", 1), ("started", 2), ("finished", 2)]
