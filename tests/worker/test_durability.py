"""Steps, sleeps and spawns survive retries; control-flow signals cannot be swallowed."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest

import teguh

from .conftest import Q


@pytest.mark.timeout(30)
def test_steps_run_once_across_a_failed_attempt(app: Any, client: Any, db: Any, start_worker: Any) -> None:
    attempts: list[int] = []
    executed: Counter[str] = Counter()

    def step(name: str) -> dict[str, Any]:
        executed[name] += 1
        return {"step": name, "at": time.time()}

    @app.task("flaky", retry_strategy=teguh.Fixed(0))
    def flaky(params: Any, ctx: Any) -> Any:
        attempts.append(ctx.attempt)
        a = ctx.step("A", step, "A")
        if ctx.attempt == 1:
            raise RuntimeError("boom after step A")
        b = ctx.step("B", step, "B")
        return {"a": a, "b": b}

    start_worker()
    task = flaky.spawn({"x": 1}, notify_done=True)
    result = client.wait_for_result(Q, task.task_id, timeout=15)

    assert result.state == "completed", result.failure
    assert attempts == [1, 2]
    assert executed == {"A": 1, "B": 1}, "step A was not re-run on the retry"
    assert result.attempts == 2
    stored_a = db.value(
        "select state from teguh.c_jobs where task_id = %s and checkpoint_name = 'A'", task.task_id
    )
    assert result.result["a"] == stored_a, "the retry saw step A's checkpointed value"


@pytest.mark.timeout(30)
def test_except_exception_cannot_swallow_suspended(app: Any, client: Any, start_worker: Any) -> None:
    for signal_class in (teguh.Suspended, teguh.Cancelled, teguh.LeaseLost):
        assert issubclass(signal_class, BaseException) and not issubclass(signal_class, Exception)
    swallowed: list[BaseException] = []
    calls: list[int] = []

    @app.task("stubborn")
    def stubborn(params: Any, ctx: Any) -> Any:
        calls.append(ctx.attempt)
        try:
            ctx.sleep_for("nap", 0.5)
        except Exception as exc:  # the pattern under test: must not see Suspended
            swallowed.append(exc)
            return {"slept": False}
        return {"slept": True}

    start_worker()
    task = client.spawn_task(Q, "stubborn", notify_done=True)
    result = client.wait_for_result(Q, task.task_id, timeout=10)
    assert (result.state, result.result) == ("completed", {"slept": True})
    assert swallowed == []
    assert calls == [1, 1], "the handler suspended, then resumed after the sleep"


@pytest.mark.timeout(30)
def test_spawn_task_is_idempotent_across_a_replay(app: Any, client: Any, db: Any, start_worker: Any) -> None:
    attempts: list[int] = []

    @app.task("parent", retry_strategy=teguh.Fixed(0))
    def parent(params: Any, ctx: Any) -> Any:
        attempts.append(ctx.attempt)
        child = ctx.spawn_task("child", {"from": ctx.task_id}, notify_done=True)
        if ctx.attempt == 1:
            raise RuntimeError("fail after spawning the child")
        return {"child": child.task_id, "created": child.created}

    @app.task("child")
    def child(params: Any) -> Any:
        return {"child_of": params["from"]}

    start_worker()
    task = parent.spawn(notify_done=True)
    result = client.wait_for_result(Q, task.task_id, timeout=15)
    assert result.state == "completed", result.failure
    assert attempts == [1, 2]
    children = db.all("select task_id::text, params from teguh.t_jobs where task_name = 'child'")
    assert len(children) == 1, children
    assert result.result["child"] == children[0][0]
    child_result = client.wait_for_result(Q, children[0][0], timeout=10)
    assert child_result.result == {"child_of": task.task_id}


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_heartbeats_keep_a_long_task_alive(app: Any, client: Any, start_worker: Any) -> None:
    executions: list[int] = []
    never = threading.Event()

    @app.task("long")
    def long(params: Any, ctx: Any) -> Any:
        executions.append(ctx.attempt)
        never.wait(5)  # blocks well past claim_timeout, with no ctx call
        return {"done": True}

    # Two workers with a free slot each: an expired lease would be picked up.
    start_worker(claim_timeout=2, concurrency=2, worker_id="hb-1")
    start_worker(claim_timeout=2, concurrency=2, worker_id="hb-2")
    task = client.spawn_task(Q, "long", notify_done=True)
    result = client.wait_for_result(Q, task.task_id, timeout=30)
    assert (result.state, result.result) == ("completed", {"done": True})
    assert result.attempts == 1
    assert executions == [1], "the task ran once: its lease never expired"
