"""Waiting for child tasks: wait_for, gather and map against a real PostgreSQL and worker threads."""

from __future__ import annotations

from typing import Any

import pytest

import teguh

from .conftest import Q

SIDE = "side"


def _result(app: teguh.App, task_id: str, queue: str = Q) -> teguh.TaskResult:
    return app.client.wait_for_result(queue, task_id, timeout=20)


@pytest.mark.timeout(60)
def test_wait_for_returns_the_childs_result_and_frees_the_slot(app: teguh.App, start_worker: Any) -> None:
    runs: list[str] = []

    @app.task("child")
    def child(params: Any, ctx: teguh.TaskContext) -> Any:
        return {"double": params * 2}

    @app.task("parent")
    def parent(params: Any, ctx: teguh.TaskContext) -> Any:
        runs.append(ctx.run_id)
        spawned = ctx.spawn_task("child", 21)
        return ctx.wait_for(spawned)

    # one slot: the parent must give it up for the child to run at all
    start_worker(concurrency=1)
    spawned = app.client.spawn_task(Q, "parent", None, notify_done=True)
    result = _result(app, spawned.task_id)
    assert (result.state, result.result) == ("completed", {"double": 42})
    assert len(runs) == 2, "one run that suspends, one that reads the result"


@pytest.mark.timeout(60)
def test_gather_keeps_order_and_children_may_live_on_another_queue(app: teguh.App, start_worker: Any) -> None:
    app.client.create_queue(SIDE)

    @app.task("slow", queue=SIDE)
    def slow(params: Any, ctx: teguh.TaskContext) -> Any:
        return f"side:{params}"

    @app.task("fast")
    def fast(params: Any, ctx: teguh.TaskContext) -> Any:
        return f"main:{params}"

    @app.task("parent")
    def parent(params: Any, ctx: teguh.TaskContext) -> Any:
        third = ctx.spawn_task("slow", 3, queue=SIDE)
        kids = [
            ctx.spawn_task("slow", 1, queue=SIDE),
            ctx.spawn_task("fast", 2).task_id,
            (SIDE, third.task_id),  # a (queue, task_id) pair works too
        ]
        return ctx.gather(kids)

    start_worker(queues=[Q, SIDE], concurrency=2)
    spawned = app.client.spawn_task(Q, "parent", None, notify_done=True)
    result = _result(app, spawned.task_id)
    assert result.result == ["side:1", "main:2", "side:3"]
    kid = app.client._get_task_links(SIDE, _children_of(app, spawned.task_id, SIDE)[0])
    assert kid[1:] == (spawned.task_id, Q)


def _children_of(app: teguh.App, parent_id: str, queue: str) -> list[str]:
    with app.client.transaction() as conn, conn.cursor() as cur:
        cur.execute(
            f"select task_id::text from teguh.t_{queue} where parent_task_id = %s order by task_id",
            (parent_id,),
        )
        return [r[0] for r in cur.fetchall()]


@pytest.mark.timeout(60)
def test_map_spawns_once_and_gathers_in_order(app: teguh.App, start_worker: Any) -> None:
    @app.task("square")
    def square(params: Any, ctx: teguh.TaskContext) -> Any:
        return params * params

    @app.task("parent")
    def parent(params: Any, ctx: teguh.TaskContext) -> Any:
        return ctx.map("squares", "square", range(6))

    start_worker(concurrency=3)
    spawned = app.client.spawn_task(Q, "parent", None, notify_done=True)
    assert _result(app, spawned.task_id).result == [0, 1, 4, 9, 16, 25]
    assert len(_children_of(app, spawned.task_id, Q)) == 6


@pytest.mark.timeout(60)
def test_a_failed_child_raises_child_failed_with_its_details(app: teguh.App, start_worker: Any) -> None:
    seen: dict[str, Any] = {}

    @app.task("broken", max_attempts=1)
    def broken(params: Any, ctx: teguh.TaskContext) -> Any:
        raise RuntimeError("no luck")

    @app.task("parent")
    def parent(params: Any, ctx: teguh.TaskContext) -> Any:
        kid = ctx.spawn_task("broken", None, max_attempts=1)
        try:
            ctx.wait_for(kid)
        except teguh.ChildFailed as exc:
            seen.update(task_id=exc.task_id, state=exc.state, failure=exc.failure)
            return "compensated"
        return "unexpected"

    start_worker(concurrency=2)
    spawned = app.client.spawn_task(Q, "parent", None, notify_done=True)
    assert _result(app, spawned.task_id).result == "compensated"
    assert seen["state"] == "failed"
    assert seen["failure"]["message"] == "no luck"
    assert seen["task_id"] == _children_of(app, spawned.task_id, Q)[0]


@pytest.mark.timeout(60)
def test_uncaught_child_failed_fails_the_parent_at_once(app: teguh.App, start_worker: Any) -> None:
    @app.task("broken")
    def broken(params: Any, ctx: teguh.TaskContext) -> Any:
        raise RuntimeError("no luck")

    @app.task("parent")
    def parent(params: Any, ctx: teguh.TaskContext) -> Any:
        return ctx.wait_for(ctx.spawn_task("broken", None, max_attempts=1))

    start_worker(concurrency=2)
    spawned = app.client.spawn_task(Q, "parent", None, notify_done=True, max_attempts=5)
    result = _result(app, spawned.task_id)
    assert result.state == "failed"
    assert result.failure["type"] == "ChildFailed"
    assert result.attempts == 1, "ChildFailed is NonRetryable: a retry would read the same outcome"


@pytest.mark.timeout(60)
def test_waiting_on_a_task_that_is_not_a_child_is_refused(app: teguh.App, start_worker: Any) -> None:
    stranger = app.client.spawn_task(Q, "nobody-runs-this", None, available_at=None)

    @app.task("parent")
    def parent(params: Any, ctx: teguh.TaskContext) -> Any:
        try:
            ctx.wait_for(params)
        except teguh.InvalidArgument as exc:
            return str(exc)
        return "waited"

    start_worker(concurrency=1)
    spawned = app.client.spawn_task(Q, "parent", stranger.task_id, notify_done=True)
    message = _result(app, spawned.task_id).result
    assert "is not a child of task" in message and stranger.task_id in message


@pytest.mark.timeout(60)
def test_timeout_raises_child_timeout_and_replays_it(app: teguh.App, start_worker: Any) -> None:
    outcomes: list[str] = []

    @app.task("parent")
    def parent(params: Any, ctx: teguh.TaskContext) -> Any:
        kid = ctx.spawn_task("never-handled", None)
        try:
            ctx.wait_for(kid, timeout=1)
        except teguh.ChildTimeout:
            outcomes.append("timeout")
            ctx.sleep_for("then", 0)
            return "gave up"
        return "got it"

    start_worker(concurrency=1, poll_interval=0.2)
    spawned = app.client.spawn_task(Q, "parent", None, notify_done=True)
    assert _result(app, spawned.task_id).result == "gave up"
    assert outcomes == ["timeout"]


@pytest.mark.timeout(60)
def test_a_child_done_before_the_wait_is_read_at_once(app: teguh.App, start_worker: Any) -> None:
    runs: list[int] = []

    @app.task("quick")
    def quick(params: Any, ctx: teguh.TaskContext) -> Any:
        return "quick"

    @app.task("parent")
    def parent(params: Any, ctx: teguh.TaskContext) -> Any:
        runs.append(1)
        kid = ctx.spawn_task("quick", None)
        ctx.step("let the child finish", _wait_done, app, kid.task_id)
        return ctx.wait_for(kid)

    start_worker(concurrency=2)
    spawned = app.client.spawn_task(Q, "parent", None, notify_done=True)
    assert _result(app, spawned.task_id).result == "quick"
    assert len(runs) == 1, "no suspension when the child had ended"


def _wait_done(app: teguh.App, task_id: str) -> bool:
    app.client.wait_for_result(Q, task_id, timeout=20)
    return True
