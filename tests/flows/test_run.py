"""Flows on a real worker: waves of child tasks, skipped steps, on_failure, results."""

from __future__ import annotations

import threading
from typing import Any

import psycopg2
import pytest
from _support.polling import eventually

import teguh
from teguh.testing import eager

from .conftest import Q


@pytest.fixture
def app(dsn: str):
    application = teguh.App(dsn, queue=Q)
    application.client.create_queue(Q)
    try:
        yield application
    finally:
        application.client.close()


def run_flow(app: teguh.App, flow: teguh.Flow, inp: Any, timeout: float = 30) -> teguh.TaskResult:
    spawned = flow.spawn(inp, notify_done=True)
    return app.client.wait_for_result(Q, spawned.task_id, timeout=timeout)


def spawned_id(db, task_name: str) -> str:
    return db.value("select task_id::text from teguh.t_jobs where task_name = %s", task_name)


def test_a_diamond_runs_each_step_once_with_its_dependencies_results(app, threads, db):
    calls: list[tuple[str, Any]] = []
    lock = threading.Lock()

    def record(name: str, up: Any) -> None:
        with lock:
            calls.append((name, up))

    flow = teguh.Flow("diamond", app=app)

    @flow.step("a")
    def a(inp, up):
        record("a", up)
        return inp["x"]

    @flow.step("b", depends_on=["a"])
    def b(inp, up):
        record("b", up)
        return up["a"] * 10

    @flow.step("c", depends_on=["a"])
    def c(inp, up, ctx):  # a step may take the context too
        record("c", up)
        return {"c": up["a"] + 1, "task": ctx.task_name}

    @flow.step("d", depends_on=["b", "c"])
    def d(inp, up):
        record("d", up)
        return up["b"] + up["c"]["c"]

    threads(app, concurrency=4)
    result = run_flow(app, flow, {"x": 3})

    assert result.state == "completed", result.failure
    assert result.result == {"a": 3, "b": 30, "c": {"c": 4, "task": "diamond.c"}, "d": 34}
    assert sorted(name for name, _ in calls) == ["a", "b", "c", "d"]  # each step once
    assert dict(calls)["d"] == {"b": 30, "c": {"c": 4, "task": "diamond.c"}}
    assert dict(calls)["a"] == {}
    # every step is a child task of the flow's task
    parents = db.all("select task_name, parent_task_id::text from teguh.t_jobs where task_name <> 'diamond'")
    assert sorted(parents) == [(f"diamond.{s}", spawned_id(db, "diamond")) for s in "abcd"]


def test_a_false_condition_skips_the_step_and_the_steps_that_depend_only_on_it(app, threads):
    ran: list[str] = []
    flow = teguh.Flow("order", app=app)

    @flow.step("charge")
    def charge(inp, up):
        ran.append("charge")
        return {"declined": inp["declined"]}

    @flow.step("ship", depends_on=["charge"], condition=lambda up: not up["charge"]["declined"])
    def ship(inp, up):
        ran.append("ship")
        return "shipped"

    @flow.step("refund", depends_on=["charge"], condition=lambda up: up["charge"]["declined"])
    def refund(inp, up):
        ran.append("refund")
        return "refunded"

    @flow.step("mail-refund", depends_on=["refund"])  # only on skipped steps: skipped too
    def mail_refund(inp, up):
        ran.append("mail-refund")
        return "mailed"

    @flow.step("close", depends_on=["ship", "refund"])  # one dependency ran: runs, without the skipped one
    def close(inp, up):
        ran.append("close")
        return sorted(up)

    threads(app, concurrency=4)
    result = run_flow(app, flow, {"declined": False})

    assert result.state == "completed", result.failure
    assert result.result == {"charge": {"declined": False}, "ship": "shipped", "close": ["ship"]}
    assert sorted(ran) == ["charge", "close", "ship"]


def test_a_failed_step_runs_on_failure_then_fails_the_flow(app, threads):
    seen: dict[str, Any] = {}
    flow = teguh.Flow("order", app=app, on_failure="refund")

    @flow.step("charge")
    def charge(inp, up):
        return {"charged": 10}

    @flow.step("ship", depends_on=["charge"], max_attempts=1)
    def ship(inp, up):
        raise RuntimeError("no truck")

    @flow.step("notify", depends_on=["ship"])
    def notify(inp, up):  # pragma: no cover - never reached
        seen["notify"] = True

    @flow.step("refund")
    def refund(inp, up):
        seen["refund"] = up
        return "refunded"

    threads(app, concurrency=4)
    result = run_flow(app, flow, {"order": 7})

    assert result.state == "failed"
    assert "step 'ship' failed" in result.failure["message"] and "no truck" in result.failure["message"]
    assert result.attempts == 1  # FlowFailed is not retried
    assert "notify" not in seen
    assert seen["refund"]["charge"] == {"charged": 10}
    assert seen["refund"]["$failed"]["step"] == "ship"
    assert seen["refund"]["$failed"]["state"] == "failed"


def test_a_condition_that_raises_fails_its_step(app, threads):
    flow = teguh.Flow("f", app=app)
    flow.step("a")(lambda inp, up: 1)
    flow.step("b", depends_on=["a"], condition=lambda up: up["missing"])(lambda inp, up: 2)

    threads(app, concurrency=2)
    result = run_flow(app, flow, None)

    assert result.state == "failed"
    assert "step 'b' failed: 'missing'" in result.failure["message"]


def test_spawning_a_flow_in_a_rolled_back_transaction_spawns_nothing(app, dsn):
    flow = teguh.Flow("f", app=app)
    flow.step("a")(lambda inp, up: 1)
    conn = psycopg2.connect(dsn)
    try:
        spawned = flow.spawn({"x": 1}, conn=conn)
        conn.rollback()
    finally:
        conn.close()
    with pytest.raises(teguh.TaskNotFound):
        app.client.get_task_result(Q, spawned.task_id)


def test_cancelling_a_flow_cancels_its_running_steps(app, threads, db):
    started = threading.Event()
    flow = teguh.Flow("f", app=app)

    @flow.step("long")
    def long(inp, up, ctx):
        started.set()
        while True:  # until cancelled: the context call raises Cancelled
            ctx.heartbeat()
            threading.Event().wait(0.05)

    flow.step("after", depends_on=["long"])(lambda inp, up: "never")
    threads(app, concurrency=2)
    spawned = flow.spawn(None, notify_done=True)
    assert started.wait(15)
    app.client.cancel_task(Q, spawned.task_id)

    assert app.client.wait_for_result(Q, spawned.task_id, timeout=15).state == "cancelled"

    def steps() -> list[tuple[str, str]]:
        query = "select task_name, state from teguh.t_jobs where parent_task_id = %s::uuid"
        return db.all(query, spawned.task_id)

    eventually(lambda: steps() == [("f.long", "cancelled")], what=lambda: str(steps()))


def test_a_flow_runs_in_eager_mode():
    app = teguh.App("postgresql://nobody@invalid.invalid/none", queue=Q)
    flow = teguh.Flow("f", app=app)
    flow.step("a")(lambda inp, up: inp + 1)
    flow.step("b", depends_on=["a"])(lambda inp, up: up["a"] * 2)
    flow.step("c", depends_on=["a"], condition=lambda up: up["a"] > 100)(lambda inp, up: "big")
    with eager(app) as runner:
        spawned = flow.spawn(1)
        result = runner.result(spawned.task_id)
    assert (result.state, result.result) == ("completed", {"a": 2, "b": 4})
