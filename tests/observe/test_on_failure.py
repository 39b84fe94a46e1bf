"""`@app.task(..., on_failure=...)`: a task spawned in the failure's own transaction, once."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from _support.polling import eventually

from teguh import InvalidArgument, NonRetryable, NoRetry, TaskContext
from teguh.app import App
from teguh.testing import WorkerThread

from .conftest import Q


def tasks_named(db: Any, name: str) -> list[dict[str, Any]]:
    return db.dicts(f"select task_id::text, params, state from teguh.t_{Q} where task_name = %s", name)


def register_notify(app: App) -> list[Any]:
    received: list[Any] = []

    @app.task("notify-ops")
    def notify(params: Any) -> None:
        received.append(params)

    return received


def test_option_is_checked_when_decorating(app: App) -> None:
    with pytest.raises(TypeError, match="on_failure of task 'a' must be a task name"):
        app.task("a", on_failure=42)
    with pytest.raises(InvalidArgument, match="cannot be its own on_failure"):
        app.task("a", on_failure="a")
    with pytest.raises(InvalidArgument, match="on_failure must not be blank"):
        app.task("a", on_failure=" ")
    assert app.tasks == {}


def test_a_worker_refuses_to_start_without_the_handler(app: App) -> None:
    @app.task("job", on_failure="notify-opz")
    def job(params: Any) -> None: ...

    worker = app.worker(install_signal_handlers=False)
    with pytest.raises(InvalidArgument, match="on_failure names task 'notify-opz', which has no handler"):
        worker.run()


@pytest.mark.timeout(60)
def test_spawned_once_when_the_task_fails_for_good_not_on_retries(
    app: App, start_worker: Any, db: Any
) -> None:
    received = register_notify(app)

    @app.task("job", on_failure="notify-ops", max_attempts=3, retry_strategy=NoRetry())
    def job(params: Any) -> None:
        raise ValueError(f"broken {params}")

    handle = start_worker()
    task_id = job.spawn(1).task_id
    assert app.client.wait_for_result(Q, task_id, timeout=15).state == "failed"
    eventually(lambda: len(received) == 1, timeout=15)
    handle.wait_idle()
    assert len(received) == 1  # three failed attempts, one failure for good, one reaction
    params = received[0]
    assert (params["task_id"], params["task_name"], params["queue"]) == (task_id, "job", Q)
    assert params["failure"]["type"] == "ValueError" and params["failure"]["message"] == "broken 1"
    assert [t["state"] for t in tasks_named(db, "notify-ops")] == ["completed"]


@pytest.mark.timeout(60)
def test_non_retryable_spawns_it_and_cancel_does_not(app: App, start_worker: Any) -> None:
    received = register_notify(app)
    entered, go_on = threading.Event(), threading.Event()

    @app.task("job", on_failure="notify-ops")
    def job(params: Any, ctx: TaskContext) -> None:
        if params == "wait":
            entered.set()
            go_on.wait(20)
            ctx.step("refused", lambda: 1)
        raise NonRetryable("no way")

    handle = start_worker()
    failed = job.spawn("fail").task_id
    eventually(lambda: [p["task_id"] for p in received] == [failed], timeout=15)
    cancelled = job.spawn("wait").task_id
    assert entered.wait(15)
    app.client.cancel_task(Q, cancelled)
    go_on.set()
    eventually(lambda: app.client.get_task_result(Q, cancelled).state == "cancelled", timeout=15)
    handle.wait_idle()
    assert [p["task_id"] for p in received] == [failed]
    assert received[0]["failure"]["non_retryable"] is True


@pytest.mark.timeout(60)
def test_spawned_when_a_dead_workers_lease_expires_on_the_last_attempt(app: App, db: Any) -> None:
    # No Python decides this failure: a claim recovers the expired lease in
    # SQL, and the reaction is spawned in that same transaction.
    received = register_notify(app)

    @app.task("job", on_failure="notify-ops", max_attempts=1)
    def job(params: Any) -> None: ...

    worker = app.worker(install_signal_handlers=False, poll_interval=0.2, claim_timeout=1)
    worker._register_task_types(app.client, Q)  # what a starting worker does
    task_id = job.spawn().task_id
    # a worker that claims and then dies: its lease is never extended
    assert [r["task_id"] for r in app.client._claim_runs(Q, "dead:1", 1, 1)] == [task_id]
    with WorkerThread(worker):
        eventually(lambda: len(received) == 1, timeout=20)
    assert received[0]["task_id"] == task_id
    assert (
        received[0]["failure"]["type"] == "$ClaimTimeout" and received[0]["failure"]["worker_id"] == "dead:1"
    )
    assert len(tasks_named(db, "notify-ops")) == 1


def test_registered_in_the_task_types(app: App, db: Any) -> None:
    @app.task("notify-ops", queue="ops")
    def notify(params: Any) -> None: ...

    @app.task("job", on_failure="notify-ops")
    def job(params: Any) -> None: ...

    app.client.create_queue("ops")
    worker = app.worker(Q, install_signal_handlers=False)
    worker._register_task_types(app.client, Q)
    rows = db.all("select task_name, on_failure from teguh.task_types where queue_name = %s order by 1", Q)
    # the reaction goes to its handler's queue
    assert rows == [("job", {"task_name": "notify-ops", "queue": "ops"})]


@pytest.mark.timeout(90)
def test_a_worker_killed_on_the_last_attempt_gets_its_reaction_exactly_once(dsn: str, db: Any) -> None:
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from . import crash_app

    here = Path(__file__).resolve().parent
    setup = crash_app.build_app(dsn)
    setup.client.create_queue(Q)
    task_id = setup.spawn_task("job").task_id
    setup.client.close()
    env = {**os.environ, "PYTHONPATH": str(here.parent.parent)}
    proc = subprocess.Popen(
        [sys.executable, str(here / "crash_app.py"), dsn],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        eventually(
            lambda: db.value(f"select state from teguh.t_{Q} where task_id = %s", task_id) == "running",
            timeout=30,
        )
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
    received: list[Any] = []
    app = crash_app.build_app(dsn, received)
    try:
        worker = app.worker(install_signal_handlers=False, poll_interval=0.5, claim_timeout=2)
        with WorkerThread(worker) as running:
            eventually(lambda: len(received) == 1, timeout=30)
            running.wait_idle()
        assert received[0]["task_id"] == task_id and received[0]["failure"]["type"] == "$ClaimTimeout"
        assert db.value(f"select state from teguh.t_{Q} where task_id = %s", task_id) == "failed"
        assert len(tasks_named(db, "notify-ops")) == 1
    finally:
        app.client.close()
