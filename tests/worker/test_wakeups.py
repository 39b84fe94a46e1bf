"""What ends a worker's idle wait: notifications, due sleeps and events, stop().

Every worker here polls only every 30 s and no ticker runs, so anything that
happens within a second or two was caused by LISTEN or by the queue's next due
moment.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest

import teguh

from .conftest import Q, WorkerThread, eventually


def _ping_app(app: Any) -> tuple[threading.Event, list[float]]:
    ran = threading.Event()
    started_at: list[float] = []

    @app.task("ping")
    def ping(params: Any) -> Any:
        started_at.append(time.monotonic())
        ran.set()
        return "pong"

    return ran, started_at


@pytest.mark.timeout(30)
def test_idle_worker_starts_a_new_task_within_a_second(app: Any, client: Any, start_worker: Any) -> None:
    ran, started_at = _ping_app(app)
    handle: WorkerThread = start_worker(poll_interval=30)
    for _ in range(3):
        ran.clear()
        handle.wait_idle()
        assert client.next_due(Q) is None, "nothing is due: only a notification can end this wait"
        spawned_at = time.monotonic()
        task = client.spawn_task(Q, "ping", notify_done=True)
        assert ran.wait(5), "the spawn's notification did not wake the worker"
        assert started_at[-1] - spawned_at < 1.0
        assert client.wait_for_result(Q, task.task_id, timeout=5).result == "pong"


@pytest.mark.timeout(30)
def test_idle_is_set_only_while_nothing_is_in_flight(app: Any, client: Any, start_worker: Any) -> None:
    release = threading.Event()
    idle_while_running: list[bool] = []
    workers: list[Any] = []

    @app.task("hold")
    def hold(params: Any) -> Any:
        idle_while_running.append(workers[0].idle.is_set())
        release.wait(10)
        return "done"

    handle: WorkerThread = start_worker(poll_interval=30)
    workers.append(handle.worker)
    handle.wait_idle()
    task = client.spawn_task(Q, "hold", notify_done=True)
    eventually(lambda: idle_while_running, timeout=5)
    assert idle_while_running == [False]
    assert not handle.worker.idle.is_set()
    release.set()
    assert client.wait_for_result(Q, task.task_id, timeout=5).state == "completed"
    # idle again only once the completion is recorded: nothing is left in flight
    handle.wait_idle()
    assert handle.worker.processed == 1
    handle.worker.stop()
    handle.thread.join(5)
    assert not handle.worker.idle.is_set(), "a stopped worker is not idle"


@pytest.mark.timeout(30)
def test_durable_sleep_resumes_on_time_without_ticker(
    app: Any, client: Any, db: Any, start_worker: Any
) -> None:
    calls: list[tuple[str, float, int]] = []
    step_runs: Counter[str] = Counter()

    def step_a() -> str:
        step_runs["A"] += 1
        return "a-result"

    @app.task("napper")
    def napper(params: Any, ctx: Any) -> Any:
        calls.append(("before", time.monotonic(), ctx.attempt))
        a = ctx.step("A", step_a)
        ctx.sleep_for("nap", 1)
        calls.append(("after", time.monotonic(), ctx.attempt))
        return {"a": a}

    start_worker(poll_interval=30)
    task = client.spawn_task(Q, "napper", notify_done=True)
    result = client.wait_for_result(Q, task.task_id, timeout=10)

    assert (result.state, result.result, result.attempts) == ("completed", {"a": "a-result"}, 1)
    assert [c[0] for c in calls] == ["before", "before", "after"], "code before the sleep runs twice"
    assert step_runs == {"A": 1}, "the step before the sleep runs once"
    assert [c[2] for c in calls] == [1, 1, 1], "a wake-up from a sleep is not a new attempt"
    gap = calls[1][1] - calls[0][1]
    assert 0.95 <= gap < 2.0, f"resumed {gap:.2f} s after the first run (sleep 1 s)"
    kinds = dict(db.all("select checkpoint_name, kind from teguh.c_jobs where task_id = %s", task.task_id))
    assert kinds == {"A": "step", "nap": "sleep"}


@pytest.mark.timeout(30)
def test_external_event_wakes_a_waiting_handler(app: Any, client: Any, db: Any, start_worker: Any) -> None:
    seen: list[dict[str, Any]] = []

    @app.task("waiter")
    def waiter(params: Any, ctx: Any) -> Any:
        seen.append(
            {"attempt": ctx.attempt, "wake_event": ctx.wake_event, "event_payload": ctx.event_payload}
        )
        payload = ctx.await_event("order-paid")
        return {"got": payload}

    start_worker(poll_interval=30)
    task = client.spawn_task(Q, "waiter", notify_done=True)

    def waiting() -> bool:
        return db.value("select state from teguh.t_jobs where task_id = %s", task.task_id) == "sleeping" and (
            db.value("select event_name from teguh.w_jobs where task_id = %s", task.task_id) == "order-paid"
        )

    eventually(waiting, timeout=10)
    emitted_at = time.monotonic()
    client.emit_event(Q, "order-paid", {"amount": 42, "currency": "EUR"})
    result = client.wait_for_result(Q, task.task_id, timeout=10)
    assert time.monotonic() - emitted_at < 2.0
    assert (result.state, result.result) == ("completed", {"got": {"amount": 42, "currency": "EUR"}})
    assert len(seen) == 2
    assert seen[1]["attempt"] == 1, "a wake-up by an event is not a new attempt"
    assert seen[1]["wake_event"] == "order-paid"
    assert seen[1]["event_payload"] == {"amount": 42, "currency": "EUR"}


@pytest.mark.timeout(30)
def test_event_emitted_before_the_await_returns_at_once(app: Any, client: Any, start_worker: Any) -> None:
    calls: list[int] = []

    @app.task("late-waiter")
    def late_waiter(params: Any, ctx: Any) -> Any:
        calls.append(ctx.attempt)
        return {"got": ctx.await_event("already-there", timeout=60)}

    client.emit_event(Q, "already-there", [1, "two"])
    client.emit_event(Q, "already-there", "second emit loses")
    start_worker(poll_interval=30)
    task = client.spawn_task(Q, "late-waiter", notify_done=True)
    result = client.wait_for_result(Q, task.task_id, timeout=10)
    assert (result.state, result.result) == ("completed", {"got": [1, "two"]})
    assert calls == [1], "no suspension when the event was already emitted"


@pytest.mark.timeout(30)
def test_await_timeout_raises_event_timeout_without_ticker(app: Any, client: Any, start_worker: Any) -> None:
    calls: list[int] = []

    @app.task("impatient")
    def impatient(params: Any, ctx: Any) -> Any:
        calls.append(ctx.attempt)
        try:
            ctx.await_event("never-emitted", timeout=1)
        except teguh.EventTimeout as exc:
            assert isinstance(exc, TimeoutError)
            return {"timed_out": True, "event": exc.event_name}
        return {"timed_out": False}

    start_worker(poll_interval=30)
    spawned_at = time.monotonic()
    task = client.spawn_task(Q, "impatient", notify_done=True)
    result = client.wait_for_result(Q, task.task_id, timeout=10)
    elapsed = time.monotonic() - spawned_at
    assert (result.state, result.result) == ("completed", {"timed_out": True, "event": "never-emitted"})
    assert calls == [1, 1]
    assert 0.95 <= elapsed < 3.0, f"timed out after {elapsed:.2f} s (timeout 1 s)"


@pytest.mark.timeout(40)
def test_listener_reconnects_after_its_backend_is_killed(
    app: Any, client: Any, db: Any, start_worker: Any
) -> None:
    ran, started_at = _ping_app(app)
    handle: WorkerThread = start_worker(poll_interval=30)
    old_pid = handle.worker.listener_pid
    assert old_pid is not None
    assert db.value("select pg_terminate_backend(%s)", old_pid) is True

    eventually(lambda: handle.worker.listener_pid not in (None, old_pid), timeout=15)
    handle.wait_idle()
    spawned_at = time.monotonic()
    task = client.spawn_task(Q, "ping", notify_done=True)
    assert ran.wait(5), "no notification reached the worker after its listener reconnected"
    assert started_at[-1] - spawned_at < 1.0
    assert client.wait_for_result(Q, task.task_id, timeout=5).state == "completed"

    # and it goes on working
    more = [client.spawn_task(Q, "ping", notify_done=True).task_id for _ in range(3)]
    assert [client.wait_for_result(Q, t, timeout=10).state for t in more] == ["completed"] * 3


@pytest.mark.timeout(30)
def test_stop_interrupts_the_idle_wait_at_once(app: Any, client: Any, start_worker: Any) -> None:
    handle: WorkerThread = start_worker(poll_interval=30)
    handle.wait_idle()
    began = time.monotonic()
    stopper = threading.Thread(target=handle.worker.stop)
    stopper.start()
    stopper.join(5)
    assert not stopper.is_alive()
    handle.thread.join(5)
    assert not handle.thread.is_alive(), "run() did not return after stop()"
    assert time.monotonic() - began < 1.0
    assert handle.error is None


@pytest.mark.timeout(30)
def test_stop_before_run_makes_run_return_at_once(app: Any, client: Any) -> None:
    worker = app.worker(poll_interval=30)
    try:
        worker.stop()
        thread = threading.Thread(target=worker.run, daemon=True)
        began = time.monotonic()
        thread.start()
        thread.join(10)
        assert not thread.is_alive()
        assert time.monotonic() - began < 2.0
    finally:
        worker.client.close()


@pytest.mark.timeout(40)
def test_stop_releases_runs_still_running_after_shutdown_timeout(
    app: Any, client: Any, db: Any, start_worker: Any
) -> None:
    entered = threading.Event()
    release = threading.Event()
    calls: list[str] = []

    @app.task("stuck")
    def stuck(params: Any, ctx: Any) -> Any:
        calls.append(ctx.run_id)
        if len(calls) == 1:
            entered.set()
            release.wait(30)  # the first run outlives its worker's shutdown_timeout
            return "first run (its lease was released)"
        return "second run"

    try:
        first: WorkerThread = start_worker(shutdown_timeout=0.5, worker_id="stopping")
        task = client.spawn_task(Q, "stuck", notify_done=True)
        assert entered.wait(10)
        began = time.monotonic()
        assert first.stop(timeout=10), "run() did not return after shutdown_timeout"
        assert time.monotonic() - began < 3.0
        assert db.value("select count(*) from teguh.r_jobs") == 0, "the lease was released"
        assert first.worker.stuck_handlers == 1

        start_worker(worker_id="taker", poll_interval=30)
        result = client.wait_for_result(Q, task.task_id, timeout=10)
        assert (result.state, result.result) == ("completed", "second run")
        assert len(calls) == 2 and calls[0] != calls[1]
    finally:
        release.set()
