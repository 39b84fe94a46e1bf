"""The schedule calls: bad input (nothing written), pause/resume, overlap, trigger, jitter, refusals."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg2
import pytest

import teguh
from teguh import App, InvalidArgument, ScheduleInfo, ScheduleNotFound
from teguh.testing import FakeClock

from .conftest import Q, tasks_of

UTC = timezone.utc
T0 = datetime(2026, 6, 1, 0, 0, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cron": "61 * * * *"}, "invalid cron expression '61 * * * *'"),
        ({"cron": "* * *"}, "invalid cron expression"),
        ({"cron": "0 3 * * *", "timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"cron": "0 3 * * *", "every": 60}, "exactly one of cron= and every="),
        ({}, "exactly one of cron= and every="),
        ({"every": 0.5}, "every must be at least 1 second"),
        ({"every": timedelta(milliseconds=10)}, "every must be at least 1 second"),
        ({"every": 60, "overlap": "never"}, "overlap must be one of allow, skip"),
        ({"every": 60, "catch_up": "most"}, "catch_up must be one of skip, one, all"),
        ({"every": 60, "max_catch_up": 0}, "max_catch_up"),
        ({"every": 60, "jitter": -1}, "jitter"),
        ({"every": 60, "colour": "red"}, "unknown spawn options: colour"),
        ({"every": 60, "idempotency_key": "k"}, "idempotency_key is set per tick"),
        ({"every": 60, "start_at": datetime(2026, 1, 1)}, "start_at"),
        ({"every": 60, "start_at": T0, "end_at": T0}, "end_at must be after start_at"),
    ],
)
def test_bad_definitions_fail_at_the_call_and_write_nothing(app: App, kwargs: dict, message: str) -> None:
    with pytest.raises(
        InvalidArgument, match="schedule 's'.*" + message.replace("(", r"\(").replace("*", r"\*")
    ):
        app.schedule("s", "tick", **kwargs)
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(").replace("*", r"\*")):
        app.client.create_schedule("s", "tick", queue=Q, **kwargs)
    assert app.schedules == {}
    assert app.client.list_schedules() == []


def test_a_task_no_handler_registers_fails_at_the_call(app: App) -> None:
    with pytest.raises(InvalidArgument, match="names task 'nope', which no handler of this app registers"):
        app.schedule("s", "nope", every=60)
    app.schedule("s", "tick", every=60)
    with pytest.raises(InvalidArgument, match="already defined"):
        app.schedule("s", "tick", every=120)


def test_create_list_and_the_not_found_errors(app: App) -> None:
    with FakeClock(app, start=T0):
        info = app.client.create_schedule(
            "nightly", "tick", cron="0 3 * * *", timezone="Asia/Jakarta", queue=Q
        )
    assert info == ScheduleInfo(
        name="nightly",
        task_name="tick",
        queue=Q,
        spec="0 3 * * *",
        timezone="Asia/Jakarta",
        next_run_at=datetime(2026, 6, 1, 20, 0, tzinfo=UTC),  # 03:00 in Jakarta (UTC+7)
        last_run_at=None,
        last_task_id=None,
        paused=False,
    )
    assert app.client.list_schedules() == [info]
    for call in (
        app.client.pause_schedule,
        app.client.resume_schedule,
        app.client.delete_schedule,
        app.client.trigger_schedule,
    ):
        with pytest.raises(ScheduleNotFound, match="no schedule named 'other'"):
            call("other")
    with pytest.raises(teguh.QueueNotFound):
        app.client.create_schedule("elsewhere", "tick", every=60, queue="missing")
    app.client.delete_schedule("nightly")
    assert app.client.list_schedules() == []


def test_paused_fires_nothing_and_resume_follows_catch_up(app: App) -> None:
    with FakeClock(app, start=T0) as clock:
        for catch_up in ("skip", "one", "all"):
            app.client.create_schedule(catch_up, "tick", every=60, catch_up=catch_up, queue=Q)
            app.client.pause_schedule(catch_up)
        clock.advance(minutes=10, seconds=35)  # ten ticks while paused
        assert [len(tasks_of(app, n)) for n in ("skip", "one", "all")] == [0, 0, 0]
        for name in ("skip", "one", "all"):
            app.client.resume_schedule(name)
        clock.tick()
        assert [len(tasks_of(app, n)) for n in ("skip", "one", "all")] == [0, 1, 10]
        clock.advance(seconds=25)  # the next tick fires on time for each
        assert [len(tasks_of(app, n)) for n in ("skip", "one", "all")] == [1, 2, 11]


def test_overlap_skip_spawns_nothing_while_the_last_task_is_not_terminal(app: App) -> None:
    with FakeClock(app, start=T0) as clock:
        app.client.create_schedule("o", "tick", every=60, overlap="skip", queue=Q)
        clock.advance(minutes=3)  # no worker runs: the first task stays pending
        tasks = tasks_of(app, "o")
        assert len(tasks) == 1
        info = app.client.list_schedules()[0]
        assert info.last_task_id == tasks[0]["task_id"]
        assert info.next_run_at == datetime(2026, 6, 1, 0, 4, tzinfo=UTC), "skipped ticks still advance"
        app.client.cancel_task(Q, tasks[0]["task_id"])
        clock.advance(minutes=1)
        assert len(tasks_of(app, "o")) == 2


def test_overlap_allow_spawns_each_tick(app: App) -> None:
    with FakeClock(app, start=T0) as clock:
        app.client.create_schedule("o", "tick", every=60, queue=Q)
        clock.advance(minutes=3)
        assert len(tasks_of(app, "o")) == 3


def test_trigger_spawns_now_and_keeps_the_timetable(app: App) -> None:
    with FakeClock(app, start=T0) as clock:
        app.client.create_schedule("t", "tick", every=60, params={"x": 1}, priority=5, queue=Q)
        before = app.client.list_schedules()[0].next_run_at
        result = app.client.trigger_schedule("t")
        info = app.client.list_schedules()[0]
        assert info.next_run_at == before
        assert info.last_task_id == result.task_id
        assert info.last_run_at == clock.now
    (task,) = tasks_of(app, "t")
    assert task["headers"] == {"schedule": "t", "scheduled_for": "2026-06-01T00:00:10+00:00", "trigger": True}
    assert task["idempotency_key"] is None


def test_headers_params_options_and_jitter_reach_each_task(app: App) -> None:
    with FakeClock(app, start=T0) as clock:
        app.client.create_schedule(
            "j",
            "tick",
            every=60,
            jitter=30,
            params={"p": 2},
            headers={"team": "ops"},
            max_attempts=2,
            queue=Q,
        )
        clock.advance(seconds=50)  # to the first tick exactly: its task waits for its jitter
    (task,) = tasks_of(app, "j")
    tick = datetime(2026, 6, 1, 0, 1, tzinfo=UTC)
    assert task["headers"] == {"team": "ops", "schedule": "j", "scheduled_for": tick.isoformat()}
    offset = teguh.schedules.jitter_offset("j", tick, 30)
    assert 0 < offset < 30
    assert task["available_at"] == tick + timedelta(microseconds=round(offset * 1e6))
    result = app.client.get_task_result(Q, task["task_id"])
    assert result.state == "pending"


def test_start_at_and_end_at_bound_the_ticks(app: App) -> None:
    with FakeClock(app, start=T0) as clock:
        app.client.create_schedule(
            "w",
            "tick",
            every=60,
            start_at=T0 + timedelta(minutes=2, seconds=50),
            end_at=T0 + timedelta(minutes=5, seconds=50),
            queue=Q,
        )
        clock.advance(minutes=10)
        fired = [t["headers"]["scheduled_for"] for t in tasks_of(app, "w")]
        assert app.client.list_schedules()[0].next_run_at is None
    start = T0 + timedelta(minutes=2, seconds=50)
    assert fired == [(start + timedelta(minutes=m)).isoformat() for m in range(4)], "anchored at start_at"


def _fire(app: App, *args: Any) -> list[tuple]:
    with app.client.transaction() as conn, conn.cursor() as cur:
        cur.execute("select * from teguh.fire_schedule(%s, %s, %s::jsonb, %s)", args)
        return cur.fetchall()


def test_the_engine_refuses_a_second_task_for_a_tick_whatever_the_caller(app: App) -> None:
    with FakeClock(app, start=T0) as clock:
        app.client.create_schedule("e", "tick", every=60, queue=Q)
        first = app.client.list_schedules()[0].next_run_at
        clock.set(first, jump=True)  # fires the tick itself (tick() fires due schedules)
        assert len(tasks_of(app, "e")) == 1
        ticks = json.dumps([{"scheduled_for": first.isoformat()}])
        # the same call again, by a late racer: the row moved on, so nothing
        assert _fire(app, "e", first, ticks, first + timedelta(minutes=1)) == []
        now_next = app.client.list_schedules()[0].next_run_at
        with pytest.raises(psycopg2.Error, match="is not due"):
            # a caller trying to pass an old tick with the row's current next_run_at
            _fire(app, "e", now_next, ticks, now_next + timedelta(minutes=1))
        with pytest.raises(psycopg2.Error, match="is not due"):
            # or a tick in the future
            future = json.dumps([{"scheduled_for": now_next.isoformat()}])
            _fire(app, "e", now_next, future, now_next + timedelta(minutes=1))
    assert len(tasks_of(app, "e")) == 1
