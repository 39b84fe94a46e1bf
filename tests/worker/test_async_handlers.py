"""`async def` handlers on a real worker: steps, sleeps, events, failures and signals as for sync ones."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import sys
import threading
from collections import Counter
from typing import Any

import pytest

import teguh
from teguh.app import _wants_context
from teguh.retry import NoRetry

from .conftest import Q, eventually


def _result(client: Any, task_id: str, timeout: float = 15) -> Any:
    return client.wait_for_result(Q, task_id, timeout=timeout)


@pytest.mark.timeout(60)
def test_async_handler_with_steps_sleep_and_event_completes_without_rerunning_steps(
    app: teguh.App, client: Any, start_worker: Any
) -> None:
    calls: Counter[str] = Counter()
    runs: list[int] = []
    lock = threading.Lock()

    def count(name: str) -> None:
        with lock:
            calls[name] += 1

    async def fetch(n: int) -> int:
        count("fetch")
        await asyncio.sleep(0.01)
        return n * 10

    def compute(a: int) -> dict[str, int]:
        count("compute")
        return {"a": a, "b": a + 1}

    @app.task("async-flow")
    async def flow(params: Any, ctx: teguh.TaskContext) -> Any:
        runs.append(ctx.attempt)
        a = await ctx.astep("fetch", fetch, params["n"])
        b = await ctx.astep("compute", asyncio.to_thread, compute, a)
        ctx.sleep_for("nap", 0.2)
        await asyncio.sleep(0)
        payload = ctx.await_event(f"go-{ctx.task_id}")
        ctx.emit_event(f"done-{ctx.task_id}", {"b": b})
        return {"a": a, "b": b, "payload": payload, "attempt": ctx.attempt}

    @app.task("echo-event")
    def echo(params: Any, ctx: teguh.TaskContext) -> Any:
        return ctx.await_event(params["event"])

    start_worker()
    task = client.spawn_task(Q, "async-flow", {"n": 4}, notify_done=True)
    eventually(lambda: client.get_task_result(Q, task.task_id).state == "sleeping" and len(runs) == 2, 15)
    client.emit_event(Q, f"go-{task.task_id}", {"ok": True})
    result = _result(client, task.task_id)
    assert result.state == "completed", result
    assert result.result == {"a": 40, "b": {"a": 40, "b": 41}, "payload": {"ok": True}, "attempt": 1}
    assert len(runs) == 3, "first run, after the sleep, after the event"
    assert calls == {"fetch": 1, "compute": 1}, "replays return the checkpoints"
    # each run's loop was closed with its default executor: no asyncio thread outlives a run
    assert not [t.name for t in threading.enumerate() if t.name.startswith("asyncio_")]
    # the handler's own emit went through: a task waiting for it gets its payload at once
    echoed = client.spawn_task(Q, "echo-event", {"event": f"done-{task.task_id}"}, notify_done=True)
    assert _result(client, echoed.task_id).result == {"b": {"a": 40, "b": 41}}


@pytest.mark.timeout(60)
def test_async_handler_failure_retries_like_a_sync_one(
    app: teguh.App, client: Any, start_worker: Any
) -> None:
    calls: Counter[str] = Counter()

    @app.task("async-flaky")
    async def flaky(params: Any, ctx: teguh.TaskContext) -> Any:
        calls["run"] += 1
        await ctx.astep("once", lambda: calls.update(["once"]) or 1)
        if ctx.attempt == 1:
            raise ValueError("first attempt fails")
        return "second time lucky"

    @app.task("async-raiser")
    async def raiser(params: Any) -> Any:
        await asyncio.sleep(0)
        raise KeyError("always")

    start_worker()
    flaky_task = client.spawn_task(
        Q, "async-flaky", None, retry_strategy=NoRetry(), max_attempts=3, notify_done=True
    )
    result = _result(client, flaky_task.task_id)
    assert (result.state, result.result, result.attempts) == ("completed", "second time lucky", 2)
    assert calls == {"run": 2, "once": 1}

    raising = client.spawn_task(Q, "async-raiser", None, max_attempts=1, notify_done=True)
    failed = _result(client, raising.task_id)
    assert failed.state == "failed"
    assert failed.failure["type"] == "KeyError"
    assert "in raiser" in failed.failure["traceback"]


@pytest.mark.timeout(60)
def test_except_exception_in_an_async_handler_does_not_swallow_the_suspension(
    app: teguh.App, client: Any, start_worker: Any
) -> None:
    seen: list[str] = []

    @app.task("async-stubborn")
    async def stubborn(params: Any, ctx: teguh.TaskContext) -> Any:
        try:
            ctx.sleep_for("nap", 0.2)
        except Exception as exc:  # what a careless handler does: must not catch Suspended
            seen.append(f"swallowed {type(exc).__name__}")
            return "swallowed"
        seen.append("woke")
        try:
            await asyncio.sleep(0)
            ctx.await_event(f"e-{ctx.task_id}")
        except Exception:
            seen.append("swallowed the event wait")
            return "swallowed"
        return "slept and waited"

    start_worker()
    task = client.spawn_task(Q, "async-stubborn", None, notify_done=True)
    eventually(lambda: seen == ["woke"] and client.get_task_result(Q, task.task_id).state == "sleeping", 15)
    client.emit_event(Q, f"e-{task.task_id}", 1)
    result = _result(client, task.task_id)
    assert (result.state, result.result) == ("completed", "slept and waited")
    assert seen == ["woke", "woke"]


@pytest.mark.timeout(60)
def test_around_run_hooks_and_context_variables_wrap_async_handlers(
    app: teguh.App, client: Any, start_worker: Any
) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("i11_var", default="unset")
    events: list[str] = []

    @app.around_run
    @contextlib.contextmanager
    def hook(ctx: Any) -> Any:
        events.append("enter")
        token = var.set(f"hook:{ctx.task_name}")
        try:
            yield
        finally:
            var.reset(token)
            events.append("exit")

    @app.task("async-sees-hook")
    async def sees(params: Any) -> Any:
        await asyncio.sleep(0)
        events.append("handler")
        return {"var": var.get(), "loop_thread": threading.current_thread().name}

    start_worker()
    first = _result(client, client.spawn_task(Q, "async-sees-hook", None, notify_done=True).task_id)
    second = _result(client, client.spawn_task(Q, "async-sees-hook", None, notify_done=True).task_id)
    for result in (first, second):
        assert result.state == "completed", result
        assert result.result["var"] == "hook:async-sees-hook"
        assert result.result["loop_thread"].startswith(f"teguh-{Q}"), "runs in the handler thread"
    assert events == ["enter", "handler", "exit"] * 2


@pytest.mark.timeout(60)
def test_a_sync_step_given_a_coroutine_function_fails_with_a_pointer_to_astep(
    app: teguh.App, client: Any, start_worker: Any
) -> None:
    async def fetch() -> int:
        return 1

    @app.task("async-wrong-step")
    async def wrong(params: Any, ctx: teguh.TaskContext) -> Any:
        return ctx.step("fetch", fetch)

    start_worker()
    wrong_task = client.spawn_task(Q, "async-wrong-step", None, max_attempts=1, notify_done=True)
    result = _result(client, wrong_task.task_id)
    assert result.state == "failed"
    assert result.failure["type"] == "TypeError"
    assert "ctx.astep" in result.failure["message"]


def test_signature_detection_works_for_async_handlers() -> None:
    async def params_only(params: Any) -> None: ...

    async def both(params: Any, ctx: Any) -> None: ...

    import functools

    @functools.wraps(both)
    async def wrapped(*args: Any) -> Any:
        return await both(*args)

    assert _wants_context(params_only) is False
    assert _wants_context(both) is True
    assert _wants_context(wrapped) is True
    with pytest.raises(TypeError, match="must take"):
        _wants_context(lambda: None)

    app = teguh.App("postgresql://unused", queue=Q)

    @app.task("raw-call")
    async def raw(params: Any) -> Any:
        return params

    coro = raw(5)  # Task.__call__ is the plain function: a coroutine for async ones
    assert asyncio.run(coro) == 5


@pytest.mark.timeout(60)
@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.TaskGroup is Python 3.11+")
def test_a_signal_inside_a_task_group_suspends_the_task_instead_of_failing_it(
    app: teguh.App, client: Any, start_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="teguh")
    runs: list[int] = []

    @app.task("async-group")
    async def grouped(params: Any, ctx: teguh.TaskContext) -> Any:
        runs.append(ctx.attempt)

        async def fetch(n: int) -> int:
            await asyncio.sleep(0)
            return n

        async def napper() -> None:
            await asyncio.sleep(0)
            ctx.sleep_for("nap", 0.2)  # raises Suspended in a child task: TaskGroup wraps it

        async with asyncio.TaskGroup() as group:
            first = group.create_task(ctx.astep("one", fetch, 1))
            group.create_task(napper())
        return first.result()

    start_worker()
    task = client.spawn_task(Q, "async-group", None, max_attempts=1, notify_done=True)
    result = _result(client, task.task_id)
    assert (result.state, result.result, result.attempts) == ("completed", 1, 1), result.failure
    assert runs == [1, 1], "suspended once, then woke and completed"
    # the engine would refuse a failure after the sleep anyway: the run must not even try one
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("teguh")]
    assert any(m.startswith("suspended: sleeping until") for m in messages), messages
    assert not [m for m in messages if "fail" in m], messages


@pytest.mark.timeout(60)
def test_async_handler_heartbeats_spawns_and_sees_its_cancellation(
    app: teguh.App, client: Any, start_worker: Any
) -> None:
    entered = threading.Event()
    saw_cancel = threading.Event()

    @app.task("async-child")
    async def child(params: Any) -> Any:
        return params * 2

    @app.task("async-parent")
    async def parent(params: Any, ctx: teguh.TaskContext) -> Any:
        spawned = ctx.spawn_task("async-child", 21)
        ctx.heartbeat(30)
        return {"child": spawned.task_id}

    @app.task("async-looper")
    async def looper(params: Any, ctx: teguh.TaskContext) -> Any:
        entered.set()
        try:
            while True:
                ctx.heartbeat()
                await asyncio.sleep(0.02)
        except Exception:  # must not catch Cancelled
            return "swallowed"
        except teguh.Cancelled:
            saw_cancel.set()
            raise

    start_worker(concurrency=2)
    parent_task = client.spawn_task(Q, "async-parent", None, notify_done=True)
    parent_result = _result(client, parent_task.task_id)
    assert parent_result.state == "completed", parent_result.failure
    child_result = _result(client, parent_result.result["child"])
    assert (child_result.state, child_result.result) == ("completed", 42)

    looping = client.spawn_task(Q, "async-looper", None, notify_done=True)
    assert entered.wait(10)
    client.cancel_task(Q, looping.task_id)
    assert saw_cancel.wait(10), "the handler never saw Cancelled"
    cancelled = _result(client, looping.task_id)
    assert (cancelled.state, cancelled.result, cancelled.failure) == ("cancelled", None, None)
