"""Cancelling a parent cancels its children (recursively, in any queue); progress reports."""

from __future__ import annotations

import select
from typing import Any

import psycopg2
import pytest
from _support.polling import eventually

import teguh

from .conftest import Q

SIDE = "side"


def _state(app: teguh.App, queue: str, task_id: str) -> str:
    return app.client.get_task_result(queue, task_id).state


def _children(app: teguh.App, parent_id: str, queue: str) -> list[str]:
    with app.client.transaction() as conn, conn.cursor() as cur:
        cur.execute(
            f"select task_id::text from teguh.t_{queue} where parent_task_id = %s order by task_id",
            (parent_id,),
        )
        return [r[0] for r in cur.fetchall()]


@pytest.fixture
def family(app: teguh.App, start_worker: Any) -> dict[str, str]:
    """A parent waiting on a child (queue SIDE) waiting on a grandchild nobody runs; all ids."""
    app.client.create_queue(SIDE)

    @app.task("grandparent")
    def grandparent(params: Any, ctx: teguh.TaskContext) -> Any:
        return ctx.wait_for(ctx.spawn_task("middle", None, queue=SIDE))

    @app.task("middle", queue=SIDE)
    def middle(params: Any, ctx: teguh.TaskContext) -> Any:
        return ctx.wait_for(ctx.spawn_task("never-handled", None))

    start_worker(queues=[Q, SIDE], concurrency=2)
    top = app.client.spawn_task(Q, "grandparent", None).task_id
    (mid,) = eventually(lambda: _children(app, top, SIDE), 20)
    (leaf,) = eventually(lambda: _children(app, mid, SIDE), 20)
    eventually(lambda: _state(app, SIDE, mid) == "sleeping" and _state(app, Q, top) == "sleeping", 20)
    return {"top": top, "mid": mid, "leaf": leaf}


@pytest.mark.timeout(60)
def test_cancelling_a_parent_cancels_its_children_and_theirs(app: teguh.App, family: dict[str, str]) -> None:
    app.client.cancel_task(Q, family["top"])
    assert _state(app, Q, family["top"]) == "cancelled"
    assert _state(app, SIDE, family["mid"]) == "cancelled"
    assert _state(app, SIDE, family["leaf"]) == "cancelled"
    with app.client.transaction() as conn, conn.cursor() as cur:
        cur.execute("select count(*) from teguh.child_waits")
        assert cur.fetchone()[0] == 0


@pytest.mark.timeout(60)
def test_children_false_leaves_the_children_alone(app: teguh.App, family: dict[str, str]) -> None:
    app.client.cancel_task(Q, family["top"], children=False)
    assert _state(app, Q, family["top"]) == "cancelled"
    assert _state(app, SIDE, family["mid"]) == "sleeping"
    # no handler takes the leaf: a worker may hold it for a moment while it fails it into a retry
    assert _state(app, SIDE, family["leaf"]) in ("pending", "sleeping", "running")


@pytest.mark.timeout(60)
def test_a_cancelled_child_wakes_its_parent_with_child_failed(app: teguh.App, family: dict[str, str]) -> None:
    # the middle task does not catch ChildFailed: it fails, which wakes the top one in turn
    app.client.cancel_task(SIDE, family["leaf"])
    mid = app.client.wait_for_result(SIDE, family["mid"], timeout=20)
    assert (mid.state, mid.failure["type"]) == ("failed", "ChildFailed")
    top = app.client.wait_for_result(Q, family["top"], timeout=20)
    assert (top.state, top.failure["type"]) == ("failed", "ChildFailed")
    assert family["mid"] in top.failure["message"]


def test_cancel_task_refuses_a_non_boolean_children(app: teguh.App) -> None:
    spawned = app.client.spawn_task(Q, "x", None)
    with pytest.raises(teguh.InvalidArgument):
        app.client.cancel_task(Q, spawned.task_id, children="yes")  # type: ignore[arg-type]
    assert _state(app, Q, spawned.task_id) == "pending"


def test_cancel_task_of_an_unknown_task_still_raises(app: teguh.App) -> None:
    with pytest.raises(teguh.TaskNotFound):
        app.client.cancel_task(Q, "00000000-0000-0000-0000-000000000001")


@pytest.mark.timeout(60)
def test_progress_is_stored_and_announced(dsn: str, app: teguh.App, start_worker: Any) -> None:
    listener = psycopg2.connect(dsn)
    listener.autocommit = True
    with listener.cursor() as cur:
        cur.execute("listen teguh_progress")

    @app.task("counter")
    def counter(params: Any, ctx: teguh.TaskContext) -> Any:
        for done in range(1, 4):
            ctx.report_progress(done, 3, message=f"item {done}")
        return "done"

    try:
        start_worker(concurrency=1)
        spawned = app.client.spawn_task(Q, "counter", None, notify_done=True)
        assert app.client.wait_for_result(Q, spawned.task_id, timeout=20).result == "done"
        progress = app.client.get_progress(Q, spawned.task_id)
        assert progress is not None
        assert (progress["done"], progress["total"], progress["message"]) == (3, 3, "item 3"), "the last wins"
        assert isinstance(progress["updated_at"], str)
        payloads: list[str] = []

        def three_notifications() -> bool:
            if select.select([listener], [], [], 0.1)[0]:
                listener.poll()
                payloads.extend(n.payload for n in listener.notifies)
                listener.notifies.clear()
            return len(payloads) >= 3

        eventually(three_notifications, 10)
        assert set(payloads) == {f"{Q}:{spawned.task_id}"}
    finally:
        listener.close()
    assert app.client.get_progress(Q, app.client.spawn_task(Q, "x", None).task_id) is None


@pytest.mark.timeout(60)
def test_progress_of_a_run_that_lost_its_task_is_refused(app: teguh.App) -> None:
    spawned = app.client.spawn_task(Q, "x", None)
    (run,) = app.client.claim_task(Q, "w", 30, 1)
    app.client.cancel_task(Q, spawned.task_id)
    with pytest.raises(teguh.Cancelled):
        app.client._report_progress(Q, spawned.task_id, run.run_id, '{"done": 1}')
    assert app.client.get_progress(Q, spawned.task_id) is None


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "3", True])
def test_report_progress_refuses_bad_numbers(bad: Any) -> None:
    ctx = teguh.TaskContext(
        None,  # type: ignore[arg-type]  (the check comes before any call)
        queue=Q,
        task_id="00000000-0000-0000-0000-000000000001",
        run_id="00000000-0000-0000-0000-000000000002",
        attempt=1,
        task_name="t",
        params=None,
        headers=None,
        wake_event=None,
        event_payload=None,
        checkpoints={},
        claim_timeout=30,
    )
    with pytest.raises(teguh.InvalidArgument):
        ctx.report_progress(bad)
    with pytest.raises(teguh.InvalidArgument):
        ctx.report_progress(1, total=bad)
    with pytest.raises(teguh.InvalidArgument):
        ctx.report_progress(1, message=3)  # type: ignore[arg-type]
