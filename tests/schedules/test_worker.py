"""Workers fire schedules from their idle wait, upsert their app's schedules, and follow the deploy rule."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest

from teguh import App

from .conftest import Q, eventually, tasks_of


def one_per_tick(app: App, name: str) -> list[datetime]:
    ticks = sorted(datetime.fromisoformat(t["headers"]["scheduled_for"]) for t in tasks_of(app, name))
    assert len(ticks) == len(set(ticks)), f"a tick has two tasks: {ticks}"
    steps = {b - a for a, b in itertools.pairwise(ticks)}
    assert steps <= {timedelta(seconds=1)}, f"ticks missing: {ticks}"
    return ticks


@pytest.mark.parametrize("workers", [1, 2])
def test_idle_workers_fire_one_task_per_tick(app: App, start_worker: Any, workers: int) -> None:
    app.schedule("beat", "tick", every=1, catch_up="all", params={"n": 1})
    handles = [start_worker() for _ in range(workers)]
    eventually(lambda: len(tasks_of(app, "beat")) >= 4, timeout=20, what="4 ticks")

    def completed() -> int:
        return sum(t["state"] == "completed" for t in tasks_of(app, "beat"))

    eventually(lambda: completed() >= 3, timeout=10, what="the workers ran the ticks' tasks")
    for handle in handles:
        handle.stop()
    one_per_tick(app, "beat")


def test_worker_start_upserts_and_prunes_the_apps_schedules(dsn: str, app: App, start_worker: Any) -> None:
    app.client.create_schedule("by-hand", "tick", cron="0 3 * * *", queue=Q)
    app.schedule("a", "tick", cron="0 * * * *")
    app.schedule("b", "tick", every=3600)
    start_worker().stop()
    assert [s.name for s in app.client.list_schedules()] == ["a", "b", "by-hand"]

    new = App(dsn, queue=Q)
    new.task("tick")(lambda params: params)
    new.schedule("a", "tick", cron="30 * * * *")
    new.schedule("c", "tick", every=60)
    try:
        start_worker(new).stop()
        infos = {s.name: s for s in new.client.list_schedules()}
    finally:
        new.client.close()
    assert sorted(infos) == ["a", "by-hand", "c"], "b was dropped by the code; by-hand belongs to no app"
    assert infos["a"].spec == "30 * * * *"


def test_an_old_version_restarting_mid_deploy_changes_nothing(dsn: str, start_worker: Any) -> None:
    def build(version: str, names: list[str]) -> App:
        app = App(dsn, queue=Q, version=version)
        app.task("tick")(lambda params: params)
        for name in names:
            app.schedule(name, "tick", every=3600)
        return app

    old, new = build("1", ["kept", "dropped"]), build("2", ["kept", "added"])
    old.client.create_queue(Q)
    try:
        start_worker(old).stop()
        start_worker(new).stop()
        assert [s.name for s in new.client.list_schedules()] == ["added", "kept"]
        start_worker(old).stop()  # an old worker restarts while the deploy rolls
        assert [s.name for s in new.client.list_schedules()] == ["added", "kept"], "no resurrection"
    finally:
        old.client.close()
        new.client.close()


def test_without_versions_the_last_worker_to_start_wins(dsn: str, start_worker: Any) -> None:
    def build(names: list[str]) -> App:
        app = App(dsn, queue=Q)
        app.task("tick")(lambda params: params)
        for name in names:
            app.schedule(name, "tick", every=3600)
        return app

    old, new = build(["x"]), build(["y"])
    old.client.create_queue(Q)
    try:
        start_worker(new).stop()
        start_worker(old).stop()
        assert [s.name for s in new.client.list_schedules()] == ["x"]
    finally:
        old.client.close()
        new.client.close()


def test_a_schedule_created_later_wakes_an_idle_worker(app: App, start_worker: Any) -> None:
    handle = start_worker(poll_interval=30)  # no schedule yet: only a notification can make it fire
    handle.wait_idle()
    app.client.create_schedule("late", "tick", every=1, queue=Q)
    eventually(lambda: len(tasks_of(app, "late")) >= 2, timeout=10, what="the new schedule fired")


def test_a_paused_schedule_wakes_no_worker_and_fires_nothing(app: App, start_worker: Any) -> None:
    app.client.create_schedule("p", "tick", every=1, queue=Q)
    app.client.pause_schedule("p")
    handle = start_worker(poll_interval=30)
    handle.wait_idle()
    info = app.client.list_schedules()[0]
    assert info.paused
    # the worker stays idle past two ticks: nothing is due for it
    eventually(lambda: app.client.database_time() > info.next_run_at + timedelta(seconds=2), timeout=10)
    assert tasks_of(app, "p") == []
    app.client.resume_schedule("p")
    eventually(lambda: tasks_of(app, "p"), timeout=10, what="fires once resumed")


@pytest.mark.parametrize(("catch_up", "expected"), [("skip", 0), ("one", 1), ("all", 10)])
def test_catch_up_after_a_downtime_of_ten_ticks(
    app: App, start_worker: Any, catch_up: str, expected: int
) -> None:
    now = app.client.database_time()
    start = now - timedelta(minutes=9, seconds=45)  # ticks at start + k min: ten are past, the last 45 s ago
    app.client.create_schedule("down", "tick", every=60, start_at=start, catch_up=catch_up, queue=Q)
    with app.client.transaction() as conn, conn.cursor() as cur:
        # as if no worker had run since the first tick
        cur.execute("update teguh.schedules set next_run_at = %s where name = 'down'", (start,))
    start_worker()
    eventually(
        lambda: app.client.list_schedules()[0].next_run_at == start + timedelta(minutes=10),
        timeout=10,
        what="the worker handled the missed window",
    )
    fired = [datetime.fromisoformat(t["headers"]["scheduled_for"]) for t in tasks_of(app, "down")]
    assert len(fired) == expected
    if catch_up == "one":
        assert fired == [start + timedelta(minutes=9)], "one task, for the latest tick of the window"


def test_an_app_prunes_only_the_schedules_of_its_own_tasks(dsn: str, app: App, start_worker: Any) -> None:
    app.schedule("ours", "tick", every=3600)
    start_worker().stop()
    neighbour = App(dsn, queue=Q)  # same home queue, other tasks, no schedules
    neighbour.task("other")(lambda params: params)
    try:
        start_worker(neighbour).stop()
        assert [s.name for s in neighbour.client.list_schedules()] == ["ours"]
    finally:
        neighbour.client.close()
    dropped = App(dsn, queue=Q)  # the next release of the first app: the schedule is gone, the task stays
    dropped.task("tick")(lambda params: params)
    try:
        start_worker(dropped).stop()
        assert dropped.client.list_schedules() == []
    finally:
        dropped.client.close()
