"""Repeated step names are numbered (with replays), and eager mode waits for children like a worker."""

from __future__ import annotations

from typing import Any

import pytest

import teguh
from teguh.testing import eager

from .conftest import Q


@pytest.mark.timeout(60)
def test_a_step_in_a_loop_is_numbered_and_replayed_by_order(app: teguh.App, start_worker: Any) -> None:
    calls: list[int] = []

    @app.task("looper")
    def looper(params: Any, ctx: teguh.TaskContext) -> Any:
        fetched = [ctx.step("fetch", lambda x=x: calls.append(x) or x * 10) for x in range(3)]
        ctx.sleep_for("nap", 0.2)  # the second run replays the three steps
        fetched.append(ctx.step("fetch", lambda: calls.append(99) or 990))
        return fetched

    start_worker(concurrency=1, poll_interval=0.2)
    spawned = app.client.spawn_task(Q, "looper", None, notify_done=True)
    result = app.client.wait_for_result(Q, spawned.task_id, timeout=20)
    assert result.result == [0, 10, 20, 990]
    assert calls == [0, 1, 2, 99], "each use ran once; the replay read fetch, fetch#2, fetch#3"
    with app.client.transaction() as conn, conn.cursor() as cur:
        cur.execute(
            f"select checkpoint_name from teguh.t_{Q} t join teguh.c_{Q} c using (task_id) "
            "where t.task_id = %s and c.kind = 'step' order by 1",
            (spawned.task_id,),
        )
        assert [r[0] for r in cur.fetchall()] == ["fetch", "fetch#2", "fetch#3", "fetch#4"]


def test_eager_mode_numbers_steps_too(dsn: str) -> None:
    app = teguh.App(dsn, queue=Q)

    @app.task("looper")
    def looper(params: Any, ctx: teguh.TaskContext) -> Any:
        return [ctx.step("fetch", lambda x=x: x + 1) for x in range(3)]

    with eager(app) as runner:
        spawned = looper.spawn(None)
        assert runner.result(spawned.task_id).result == [1, 2, 3]
        assert sorted(runner.checkpoints(spawned.task_id)) == ["fetch", "fetch#2", "fetch#3"]


def test_eager_mode_waits_for_children(dsn: str) -> None:
    app = teguh.App(dsn, queue=Q)

    @app.task("square")
    def square(params: Any, ctx: teguh.TaskContext) -> Any:
        ctx.report_progress(1, 1)
        return params * params

    @app.task("parent")
    def parent(params: Any, ctx: teguh.TaskContext) -> Any:
        one = ctx.wait_for(ctx.spawn_task("square", 3))
        both = ctx.gather([ctx.spawn_task("square", 4), ctx.spawn_task("square", 5, queue="side")])
        mapped = ctx.map("squares", "square", [6, 7])
        return [one, both, mapped]

    with eager(app) as runner:
        spawned = parent.spawn(None)
        assert runner.result(spawned.task_id).result == [9, [16, 25], [36, 49]]
        assert runner.result(spawned.task_id).state == "completed"
        kids = runner.find("square")
        assert len(kids) == 5 and all(k.parent_task_id == spawned.task_id for k in kids)
        assert runner.progress(kids[0].task_id)["done"] == 1


def test_eager_mode_child_failed_timeout_and_cancel(dsn: str) -> None:
    app = teguh.App(dsn, queue=Q)
    seen: list[str] = []

    @app.task("broken")
    def broken(params: Any, ctx: teguh.TaskContext) -> Any:
        raise RuntimeError("no luck")

    @app.task("sleepy")
    def sleepy(params: Any, ctx: teguh.TaskContext) -> Any:
        ctx.sleep_for("long", 3600)
        return "awake"

    @app.task("parent")
    def parent(params: Any, ctx: teguh.TaskContext) -> Any:
        try:
            ctx.wait_for(ctx.spawn_task("broken", None))
        except teguh.ChildFailed as exc:
            seen.append(f"{exc.state}:{exc.failure['message']}")
        try:
            ctx.wait_for(ctx.spawn_task("sleepy", None), timeout=60)
        except teguh.ChildTimeout:
            seen.append("timeout")
        return ctx.wait_for(ctx.spawn_task("sleepy", None))

    with eager(app, propagate=False) as runner:
        spawned = parent.spawn(None)
        assert seen == ["failed:no luck"]
        runner.advance(61)
        # the run after the timeout replays the first wait (ChildFailed again, from its checkpoint)
        assert seen == ["failed:no luck", "failed:no luck", "timeout"]
        assert runner.result(spawned.task_id).state == "sleeping"
        runner.cancel_task(spawned.task_id)
        assert runner.result(spawned.task_id).state == "cancelled"
        assert all(t.state == "cancelled" for t in runner.find("sleepy"))


def test_eager_mode_refuses_a_task_that_is_not_a_child(dsn: str) -> None:
    app = teguh.App(dsn, queue=Q)

    @app.task("lonely")
    def lonely(params: Any, ctx: teguh.TaskContext) -> Any:
        return 1

    @app.task("parent")
    def parent(params: Any, ctx: teguh.TaskContext) -> Any:
        return ctx.wait_for(params)

    with eager(app, propagate=False) as runner:
        other = lonely.spawn(None)
        spawned = parent.spawn(other.task_id)
        failure = runner.result(spawned.task_id).failure
        assert failure["type"] == "InvalidArgument" and "not a child" in failure["message"]
