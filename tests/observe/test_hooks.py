"""Lifecycle hooks (`App.on`): what each event gets, and that a failing hook changes nothing."""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any

import pytest
from _support.polling import eventually

from teguh import InvalidArgument, NonRetryable, NoRetry, TaskContext
from teguh.app import App

from .conftest import Q


def record_all(app: App) -> list[tuple[str, Any, dict[str, Any]]]:
    seen: list[tuple[str, Any, dict[str, Any]]] = []
    for event in ("task_started", "task_succeeded", "task_retrying", "task_failed", "task_cancelled"):

        def hook(ctx: Any, _event: str = event, **details: Any) -> None:
            seen.append((_event, ctx, details))

        app.on(event)(hook)
    return seen


def events_of(seen: list[tuple[str, Any, dict[str, Any]]], task_id: str) -> list[str]:
    return [event for event, _, details in seen if details["task_id"] == task_id]


def test_unknown_event_is_refused_at_registration(app: App) -> None:
    with pytest.raises(InvalidArgument, match=r"unknown hook event 'task_done'.*task_started"):
        app.on("task_done")
    with pytest.raises(TypeError, match="callable"):
        app.hooks.add("task_started", 42)  # type: ignore[arg-type]
    assert not app.hooks


@pytest.mark.timeout(60)
def test_success_gives_started_then_succeeded_with_details(app: App, start_worker: Any) -> None:
    seen = record_all(app)

    @app.task("echo")
    def echo(params: Any) -> Any:
        return params

    start_worker()
    task_id = echo.spawn({"x": 1}).task_id
    assert app.client.wait_for_result(Q, task_id, timeout=15).result == {"x": 1}
    eventually(lambda: events_of(seen, task_id) == ["task_started", "task_succeeded"], timeout=10)
    (_, ctx, started), (_, ctx2, succeeded) = [s for s in seen if s[2]["task_id"] == task_id]
    assert isinstance(ctx, TaskContext) and ctx is ctx2 and ctx.task_id == task_id
    for details in (started, succeeded):
        assert details["queue"] == Q and details["task_name"] == "echo" and details["attempt"] == 1
        assert details["run_id"] == ctx.run_id
    assert started["queue_wait"] >= 0
    assert succeeded["duration"] >= 0


@pytest.mark.timeout(60)
def test_retry_then_failure_for_good(app: App, start_worker: Any) -> None:
    seen = record_all(app)

    @app.task("flaky", max_attempts=2, retry_strategy=NoRetry())
    def flaky(params: Any) -> Any:
        raise ValueError("nope")

    start_worker()
    task_id = flaky.spawn().task_id
    assert app.client.wait_for_result(Q, task_id, timeout=15).state == "failed"

    # per attempt, in order (the retry may start before the first attempt's hook is called)
    def by_attempt() -> dict[int, list[str]]:
        attempts: dict[int, list[str]] = {}
        for event, _, details in seen:
            if details["task_id"] == task_id:
                attempts.setdefault(details["attempt"], []).append(event)
        return attempts

    expected = {1: ["task_started", "task_retrying"], 2: ["task_started", "task_failed"]}
    eventually(lambda: by_attempt() == expected, timeout=10, what=lambda: f"events: {by_attempt()}")
    retrying = next(d for e, _, d in seen if e == "task_retrying" and d["task_id"] == task_id)
    failed = next(d for e, _, d in seen if e == "task_failed" and d["task_id"] == task_id)
    assert retrying["failure"]["type"] == "ValueError" and retrying["failure"]["message"] == "nope"
    assert retrying["retry_at"] is None  # computed in SQL from the task's retry strategy
    assert failed["failure"]["type"] == "ValueError" and failed["duration"] >= 0


@pytest.mark.timeout(60)
def test_retry_at_is_given_when_the_worker_chose_the_delay(app: App, start_worker: Any) -> None:
    seen = record_all(app)

    @app.task("once", max_attempts=2)  # no strategy: the worker's default backoff (1 s)
    def once(params: Any) -> Any:
        raise NonRetryable("stop") if params else ValueError("again")

    start_worker()
    task_id = once.spawn(0).task_id
    eventually(lambda: "task_retrying" in events_of(seen, task_id), timeout=15)
    details = next(d for e, _, d in seen if e == "task_retrying" and d["task_id"] == task_id)
    assert isinstance(details["retry_at"], datetime) and details["retry_at"].tzinfo is not None
    final = once.spawn(1).task_id  # NonRetryable: failed for good at attempt 1, no retry event
    assert app.client.wait_for_result(Q, final, timeout=15).state == "failed"
    eventually(lambda: events_of(seen, final) == ["task_started", "task_failed"], timeout=10)


@pytest.mark.timeout(60)
def test_cancelled_run_gives_task_cancelled(app: App, start_worker: Any) -> None:
    seen = record_all(app)
    entered, go_on = threading.Event(), threading.Event()

    @app.task("long")
    def long(params: Any, ctx: TaskContext) -> Any:
        entered.set()
        go_on.wait(20)
        ctx.step("after", lambda: 1)  # refused: the task was cancelled meanwhile
        return "done"

    start_worker()
    task_id = long.spawn().task_id
    assert entered.wait(15)
    app.client.cancel_task(Q, task_id)
    go_on.set()
    eventually(lambda: events_of(seen, task_id) == ["task_started", "task_cancelled"], timeout=15)
    assert app.client.get_task_result(Q, task_id).state == "cancelled"


@pytest.mark.timeout(60)
def test_a_raising_hook_is_logged_and_the_task_still_succeeds(
    app: App, start_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="teguh.hooks")
    calls: list[str] = []

    @app.on("task_started")
    def broken(ctx: Any, **details: Any) -> None:
        raise RuntimeError("hook bug")

    @app.on("task_succeeded")
    def after(ctx: Any, **details: Any) -> None:
        calls.append(details["task_id"])

    @app.task("echo")
    def echo(params: Any) -> Any:
        return params

    start_worker()
    task_id = echo.spawn(7).task_id
    assert app.client.wait_for_result(Q, task_id, timeout=15).result == 7
    eventually(lambda: calls == [task_id], timeout=10)
    records = [r for r in caplog.records if r.name == "teguh.hooks"]
    assert (
        len(records) == 1
        and "broken" in records[0].getMessage()
        and "task_started" in records[0].getMessage()
    )
    assert records[0].exc_info is not None and records[0].task_id == task_id
