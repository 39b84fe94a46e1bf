"""teguh.testing and its pytest plugin: eager mode, the fake clock, worker threads, databases.

The plugin's `teguh_dsn` is pointed at the suite's per-test database by the
fixture below.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg2
import pytest
from _support.polling import eventually

import teguh
from teguh.testing import EagerRunner, FakeClock, eager, temporary_database, use_database, worker_thread

FUTURE = datetime(2100, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def teguh_dsn(dsn: str) -> str:
    return dsn


def wait_until(check: Any, timeout: float = 15.0) -> Any:
    """`_support.polling.eventually`, waiting 15 s by default."""
    return eventually(check, timeout)


# -- eager mode ---------------------------------------------------------------------


@pytest.fixture
def app() -> teguh.App:
    """An app that is never connected: eager mode must not need a database."""
    return teguh.App("host=/nonexistent dbname=never", queue="jobs")


def test_eager_runs_the_handler_inline_with_checkpointed_steps(app: teguh.App) -> None:
    calls: list[str] = []

    @app.task("greet")
    def greet(params: Any, ctx: teguh.TaskContext) -> Any:
        name = ctx.step("load", lambda: calls.append("load") or params["name"].upper())
        return {"hello": name, "pair": (1, 2)}

    with eager(app) as runner:
        spawned = greet.spawn({"name": "ann"})
        assert spawned.created and spawned.run_id is None
        result = runner.result(spawned.task_id)
    assert result.state == "completed" and result.done
    assert result.result == {"hello": "ANN", "pair": [1, 2]}  # through JSON, as in the database
    assert runner.checkpoints(spawned.task_id) == {"load": "ANN"}
    assert calls == ["load"]
    assert app._client is None  # no database was touched


def test_eager_durable_sleep_waits_for_advance_and_does_not_repeat_steps(app: teguh.App) -> None:
    calls: list[int] = []

    @app.task("remind")
    def remind(params: Any, ctx: teguh.TaskContext) -> str:
        ctx.step("before", lambda: calls.append(1))
        ctx.sleep_for("a-day", timedelta(days=1))
        ctx.step("after", lambda: calls.append(2))
        return "reminded"

    with eager(app) as runner:
        task_id = remind.spawn().task_id
        assert runner.result(task_id).state == "sleeping"
        assert runner.advance(hours=23) == 0
        assert runner.result(task_id).state == "sleeping"
        assert runner.advance(hours=1) == 1
    assert runner.result(task_id).result == "reminded"
    assert calls == [1, 2]


def test_eager_runs_async_handlers_with_steps_sleeps_and_events(app: teguh.App) -> None:
    calls: list[str] = []

    async def load(name: str) -> str:
        await asyncio.sleep(0)
        calls.append("load")
        return name.upper()

    @app.task("greet-async")
    async def greet(params: Any, ctx: teguh.TaskContext) -> Any:
        name = await ctx.astep("load", load, params["name"])
        ctx.sleep_for("nap", timedelta(hours=1))
        try:
            approval = ctx.await_event(f"approved-{ctx.task_id}")
        except Exception:  # must not catch the suspension
            return "swallowed"
        return {"hello": name, "approval": approval}

    with eager(app) as runner:
        task_id = greet.spawn({"name": "ann"}).task_id
        assert runner.result(task_id).state == "sleeping"
        runner.advance(hours=1)
        assert runner.result(task_id).state == "sleeping"
        runner.emit_event(f"approved-{task_id}", True)
    assert runner.result(task_id).result == {"hello": "ANN", "approval": True}
    assert calls == ["load"]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.TaskGroup is Python 3.11+")
def test_eager_suspends_an_async_handler_whose_task_group_child_sleeps(app: teguh.App) -> None:
    @app.task("grouped")
    async def grouped(params: Any, ctx: teguh.TaskContext) -> Any:
        async def napper() -> None:
            await asyncio.sleep(0)
            ctx.sleep_for("nap", timedelta(minutes=1))

        async with asyncio.TaskGroup() as group:
            group.create_task(napper())
        return "woke"

    with eager(app) as runner:
        task_id = grouped.spawn().task_id
        assert runner.result(task_id).state == "sleeping"
        runner.advance(minutes=1)
    assert runner.result(task_id).result == "woke"


def test_eager_runs_async_handlers_from_inside_a_running_event_loop(app: teguh.App) -> None:
    """An async test (a loop already runs in its thread) may still spawn eagerly."""

    @app.task("in-loop")
    async def in_loop(params: Any, ctx: teguh.TaskContext) -> Any:
        await asyncio.sleep(0)
        return await ctx.astep("double", lambda: params * 2)

    @app.task("in-loop-fails")
    async def fails(params: Any) -> Any:
        raise LookupError("from the inner loop")

    async def test_body() -> Any:
        with eager(app) as runner:
            done = runner.result(in_loop.spawn(21).task_id)
            with pytest.raises(LookupError, match="inner loop"):
                fails.spawn()
        return done

    assert asyncio.run(test_body()).result == 42


def test_eager_skip_sleeps_returns_at_once(app: teguh.App) -> None:
    @app.task("nap")
    def nap(params: Any, ctx: teguh.TaskContext) -> str:
        ctx.sleep_for("nap", 3600)
        return "rested"

    with eager(app, skip_sleeps=True) as runner:
        assert runner.result(nap.spawn().task_id).result == "rested"


def test_eager_events_wake_waiting_tasks_and_early_events_are_kept(app: teguh.App) -> None:
    @app.task("approve")
    def approve(params: Any, ctx: teguh.TaskContext) -> Any:
        return ctx.await_event(f"approved-{params['id']}")

    with eager(app) as runner:
        waiting = approve.spawn({"id": 1}).task_id
        assert runner.result(waiting).state == "sleeping"
        runner.emit_event("approved-1", {"by": "bob"})
        assert runner.result(waiting).result == {"by": "bob"}
        emitted_at = runner.now
        assert runner.emit_event("approved-2", "early") == teguh.EmitResult(True, emitted_at, True)
        runner.advance(60)
        again = runner.emit_event("approved-2", "ignored: the first emit wins")
        assert again == teguh.EmitResult(first=False, emitted_at=emitted_at, payload_unchanged=False)
        assert runner.result(approve.spawn({"id": 2}).task_id).result == "early"


def test_eager_event_timeout_raises_in_the_handler_after_advance(app: teguh.App) -> None:
    @app.task("wait")
    def wait(params: Any, ctx: teguh.TaskContext) -> str:
        try:
            ctx.await_event("never", timeout=timedelta(hours=1))
        except teguh.EventTimeout:
            return "timed out"
        return "emitted"

    with eager(app) as runner:
        task_id = wait.spawn().task_id
        runner.advance(minutes=59)
        assert runner.result(task_id).state == "sleeping"
        runner.advance(minutes=1)
        assert runner.result(task_id).result == "timed out"


def test_eager_failures_propagate_or_are_recorded(app: teguh.App) -> None:
    @app.task("boom")
    def boom(params: Any) -> None:
        raise RuntimeError("kaput")

    with eager(app) as runner, pytest.raises(RuntimeError, match="kaput"):
        boom.spawn()
    assert runner.tasks[0].state == "failed"
    with eager(app, propagate=False) as quiet:
        task_id = boom.spawn().task_id
    failure = quiet.result(task_id).failure
    assert failure["type"] == "RuntimeError" and failure["message"] == "kaput"


def test_eager_children_run_too_and_idempotency_keys_dedupe(app: teguh.App) -> None:
    @app.task("parent")
    def parent(params: Any, ctx: teguh.TaskContext) -> str:
        child = ctx.spawn_task("child", {"n": params["n"]})
        return child.task_id

    @app.task("child")
    def child(params: Any) -> int:
        return params["n"] * 2

    with eager(app) as runner:
        parent_id = parent.spawn({"n": 21}).task_id
        child_id = runner.result(parent_id).result
        assert runner.result(child_id).result == 42
        first = app.spawn_task("child", {"n": 1}, idempotency_key="once")
        again = app.spawn_task("child", {"n": 2}, idempotency_key="once")
    assert (again.task_id, again.created) == (first.task_id, False)
    assert [t.params for t in runner.find("child")] == [{"n": 21}, {"n": 1}]


def test_eager_task_without_handler_stays_pending_and_cancel(app: teguh.App) -> None:
    @app.task("sleepy")
    def sleepy(params: Any, ctx: teguh.TaskContext) -> None:
        ctx.sleep_for("z", 60)

    with eager(app) as runner:
        orphan = app.spawn_task("nobody-handles-this")
        assert runner.result(orphan.task_id).state == "pending"
        task_id = sleepy.spawn().task_id
        runner.cancel_task(task_id)
        runner.advance(minutes=5)
        assert runner.result(task_id).state == "cancelled"
        with pytest.raises(teguh.TaskNotFound):
            runner.result("00000000-0000-0000-0000-000000000000")


def test_eager_mode_ends_with_the_block_and_does_not_nest(app: teguh.App, dsn: str) -> None:
    real = teguh.App(dsn, queue="jobs")
    try:
        with eager(real), pytest.raises(teguh.TeguhError, match="already in eager mode"):
            EagerRunner(real).start()
        real.client.create_queue("jobs")
        spawned = real.spawn_task("anything", {"x": 1})  # the real spawn again
        assert real.client.get_task_result("jobs", spawned.task_id).state == "pending"
    finally:
        real.client.close()


def test_teguh_eager_fixture(teguh_eager: EagerRunner, teguh_app: teguh.App) -> None:
    @teguh_app.task("double")
    def double(params: Any) -> int:
        return params * 2

    assert teguh_eager.result(double.spawn(4).task_id).result == 8


# -- the fake clock, against the real database ----------------------------------------


def db_now(client: teguh.Client, conn: Any = None) -> datetime:
    return client._run(
        "t", lambda cur: (cur.execute("select teguh.current_time()"), cur.fetchone()[0])[1], conn=conn
    )


def test_fake_clock_reaches_pooled_and_caller_connections(dsn: str) -> None:
    app = teguh.App(dsn, queue="jobs")
    caller = psycopg2.connect(dsn)
    try:
        with FakeClock(app, start=FUTURE) as clock:
            assert db_now(app.client) == FUTURE
            clock.advance(hours=24)
            assert clock.now == FUTURE + timedelta(days=1)
            assert db_now(app.client) == FUTURE + timedelta(days=1)
            assert db_now(app.client, conn=caller) == FUTURE + timedelta(days=1)
            caller.commit()
            with caller.cursor() as cur:  # the setting stayed in the caller's transaction
                cur.execute("select teguh.current_time()")
                assert cur.fetchone()[0] < FUTURE
            with pytest.raises(ValueError):
                clock.advance(-1)
        assert db_now(app.client) < FUTURE  # closed: back to the real clock
    finally:
        caller.close()
        app.client.close()


def test_fake_clock_drives_a_durable_sleep_to_completion_in_a_real_worker(dsn: str) -> None:
    app = teguh.App(dsn, queue="jobs")
    runs: list[int] = []

    @app.task("remind")
    def remind(params: Any, ctx: teguh.TaskContext) -> str:
        runs.append(ctx.attempt)
        ctx.sleep_for("a-day", timedelta(days=1))
        return "done"

    try:
        with FakeClock(app) as clock, worker_thread(app, poll_interval=5, shutdown_timeout=5):
            task_id = remind.spawn(notify_done=True).task_id
            wait_until(lambda: app.client.get_task_result("jobs", task_id).state == "sleeping")
            assert clock.advance(hours=23) == 0
            assert app.client.get_task_result("jobs", task_id).state == "sleeping"
            assert clock.advance(hours=1) == 1
            done = app.client.wait_for_result("jobs", task_id, timeout=15)
        assert (done.state, done.result) == ("completed", "done")
        assert runs == [1, 1]
    finally:
        app.client.close()


def test_fake_clock_times_out_an_event_wait(dsn: str) -> None:
    app = teguh.App(dsn, queue="jobs")

    @app.task("wait")
    def wait(params: Any, ctx: teguh.TaskContext) -> str:
        try:
            return ctx.await_event("approved", timeout=timedelta(hours=6))
        except teguh.EventTimeout:
            return "timed out"

    try:
        with FakeClock(app) as clock, worker_thread(app, poll_interval=5, shutdown_timeout=5):
            task_id = wait.spawn().task_id
            wait_until(lambda: app.client.get_task_result("jobs", task_id).state == "sleeping")
            clock.advance(hours=6, seconds=1)
            done = app.client.wait_for_result("jobs", task_id, timeout=15)
        assert done.result == "timed out"
    finally:
        app.client.close()


def test_plugin_fixtures_clock_and_worker(
    teguh_app: teguh.App, teguh_clock: FakeClock, teguh_worker: Any
) -> None:
    @teguh_app.task("later")
    def later(params: Any, ctx: teguh.TaskContext) -> str:
        ctx.sleep_for("week", timedelta(weeks=1))
        return "a week later"

    assert teguh_worker.queue == teguh_app.queue == "default"
    task_id = later.spawn().task_id
    wait_until(lambda: teguh_app.client.get_task_result("default", task_id).state == "sleeping")
    teguh_clock.advance(weeks=1)
    assert teguh_app.client.wait_for_result("default", task_id, timeout=15).result == "a week later"


# -- databases ----------------------------------------------------------------------------


def test_temporary_database_has_the_schema_and_is_dropped(pg_server: Any) -> None:
    with temporary_database(pg_server.dsn("postgres")) as temp:
        with teguh.Client(temp) as client:
            assert client.schema_version()
        name = psycopg2.extensions.parse_dsn(temp)["dbname"]
    conn = psycopg2.connect(pg_server.dsn("postgres"))
    try:
        with conn.cursor() as cur:
            cur.execute("select count(*) from pg_database where datname = %s", (name,))
            assert cur.fetchone()[0] == 0
    finally:
        conn.close()


def test_use_database_points_an_app_at_a_database_and_restores_it(dsn: str) -> None:
    app = teguh.App(queue="jobs")  # no DSN: would use the environment or the embedded server
    with use_database(app, dsn) as bound:
        assert bound is app and app.client.dsn == dsn
        app.client.create_queue("jobs")
        inner = app.client
    assert app._client is None and app._dsn is None
    with pytest.raises(teguh.TeguhError, match="closed"):
        inner.list_queues()


def test_the_docs_trial_reminder_example(app: teguh.App) -> None:
    """docs/testing.md's eager examples, as written there."""
    outbox: list[tuple[str, str]] = []

    def send_mail(email: str, what: str) -> None:
        outbox.append((email, what))

    @app.task("trial-reminder")
    def trial_reminder(params: Any, ctx: teguh.TaskContext) -> str:
        ctx.step("welcome", send_mail, params["email"], "welcome")
        ctx.sleep_for("trial", timedelta(days=14))
        try:
            ctx.await_event(f"paid:{ctx.task_id}", timeout=timedelta(days=3))
            return "paid"
        except teguh.EventTimeout:
            ctx.step("nudge", send_mail, params["email"], "your trial ended")
            return "nudged"

    with eager(app) as runner:
        spawned = trial_reminder.spawn({"user": 7, "email": "a@b.c"})
        assert runner.result(spawned.task_id).state == "sleeping"
        runner.advance(days=14)
        runner.advance(days=3)
        assert runner.result(spawned.task_id).result == "nudged"
    assert runner.checkpoints(spawned.task_id).keys() == {"welcome", "nudge"}
    assert outbox == [("a@b.c", "welcome"), ("a@b.c", "your trial ended")]

    with eager(app) as runner:
        spawned = trial_reminder.spawn({"user": 8, "email": "b@c.d"})
        runner.advance(days=14)
        runner.emit_event(f"paid:{spawned.task_id}")
        assert runner.result(spawned.task_id).result == "paid"


def test_eager_spawn_later_runs_on_demand_or_is_discarded(app: teguh.App) -> None:
    ran: list[Any] = []

    @app.task("job")
    def job(params: Any) -> Any:
        ran.append(params)
        return params

    with eager(app) as runner:
        kept = runner.spawn_later("job", 1, idempotency_key="k1")
        dropped = runner.spawn_later("job", 2, idempotency_key="k2")
        assert ran == [] and runner.result(kept.task_id).state == "pending"
        runner.run(kept.task_id)
        runner.run(kept.task_id)  # runs once
        runner.discard(dropped.task_id)
        with pytest.raises(teguh.TaskNotFound):
            runner.result(dropped.task_id)
        with pytest.raises(teguh.TeguhError, match="already ran"):
            runner.discard(kept.task_id)
        assert app.spawn_task("job", 3, idempotency_key="k2").created  # the key was freed
    assert ran == [1, 3]
