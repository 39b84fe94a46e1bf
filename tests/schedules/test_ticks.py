"""The tick arithmetic every worker must agree on (no database): intervals, cron, catch-up plans, jitter."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

from teguh import schedules
from teguh.worker._schedules import ScheduleFirer

UTC = timezone.utc


def row(**fields: Any) -> dict[str, Any]:
    base = {
        "name": "s",
        "cron": None,
        "every_seconds": None,
        "timezone": "UTC",
        "catch_up": "one",
        "max_catch_up": 100,
        "jitter": 0,
        "start_at": None,
        "end_at": None,
    }
    return {**base, **fields}


def test_every_ticks_are_anchored_at_the_epoch_so_every_worker_agrees() -> None:
    after = datetime(2026, 6, 1, 12, 0, 7, 123456, tzinfo=UTC)
    ticks = schedules.ticks_after(None, 30.0, "UTC", None, None, after)
    assert [next(ticks) for _ in range(2)] == [
        datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC),
        datetime(2026, 6, 1, 12, 1, 0, tzinfo=UTC),
    ]


def test_aliases_and_the_seconds_field() -> None:
    after = datetime(2026, 6, 1, 12, 0, 7, tzinfo=UTC)
    assert next(schedules.ticks_after("@daily", None, "UTC", None, None, after)) == datetime(
        2026, 6, 2, tzinfo=UTC
    )
    assert next(schedules.ticks_after("@hourly", None, "UTC", None, None, after)) == datetime(
        2026, 6, 1, 13, tzinfo=UTC
    )
    six = schedules.ticks_after("*/20 * * * * *", None, "UTC", None, None, after)
    assert next(six) == datetime(2026, 6, 1, 12, 0, 20, tzinfo=UTC)


def test_a_long_window_of_a_minute_cron_plans_quickly() -> None:
    now = datetime(2026, 6, 1, 12, 0, 40, tzinfo=UTC)  # 12:00 is 40 s late: missed too
    started = time.monotonic()
    ticks, following = schedules.plan(
        row(cron="* * * * *", catch_up="all", max_catch_up=5, next_run_at=now - timedelta(days=200)), now
    )
    assert time.monotonic() - started < 10
    assert [t["scheduled_for"] for t in ticks] == [
        (datetime(2026, 6, 1, 11, 56, tzinfo=UTC) + timedelta(minutes=m)).isoformat() for m in range(5)
    ]
    assert following == datetime(2026, 6, 1, 12, 1, tzinfo=UTC)


def test_a_week_of_missed_every_second_ticks_plans_only_the_end() -> None:
    now = datetime(2026, 6, 1, 12, 0, 0, 200000, tzinfo=UTC)
    ticks, following = schedules.plan(
        row(every_seconds=1.0, catch_up="all", max_catch_up=3, next_run_at=now - timedelta(days=7)), now
    )
    # 11:59:59 and earlier are missed; 12:00:00 is 0.2 s late: on time
    assert [t["scheduled_for"] for t in ticks] == [
        datetime(2026, 6, 1, 11, 59, s, tzinfo=UTC).isoformat() for s in (57, 58, 59)
    ] + [datetime(2026, 6, 1, 12, tzinfo=UTC).isoformat()]
    assert following == datetime(2026, 6, 1, 12, 0, 1, tzinfo=UTC)


def test_the_on_time_grace_is_half_the_period_at_most_a_minute() -> None:
    tick = datetime(2026, 6, 1, 12, tzinfo=UTC)
    hourly = row(cron="0 * * * *", catch_up="skip", next_run_at=tick)
    assert len(schedules.plan(hourly, tick + timedelta(seconds=59))[0]) == 1
    assert schedules.plan(hourly, tick + timedelta(seconds=61))[0] == []
    minutely = row(every_seconds=60.0, catch_up="skip", next_run_at=tick)
    assert len(schedules.plan(minutely, tick + timedelta(seconds=29))[0]) == 1
    assert schedules.plan(minutely, tick + timedelta(seconds=31))[0] == []


def test_jitter_is_the_same_in_every_worker_and_within_bounds() -> None:
    tick = datetime(2026, 6, 1, 12, tzinfo=UTC)
    offsets = {schedules.jitter_offset("s", tick + timedelta(minutes=m), 10.0) for m in range(50)}
    assert all(0 <= o < 10 for o in offsets) and len(offsets) == 50
    assert schedules.jitter_offset("s", tick, 10.0) == schedules.jitter_offset("s", tick, 10.0)
    assert schedules.jitter_offset("s", tick, 0) == 0


def test_the_firer_reads_nothing_while_its_queues_have_no_schedule(app: Any) -> None:
    firer = ScheduleFirer(app.client, ["sched"])
    assert firer.seconds_until_next() is None
    assert not firer.enabled, "no schedule here: the loop stops asking"
    firer.noticed("notified", ["spawn"])
    assert not firer.enabled, "a plain spawn changes nothing"
    app.client.create_schedule("x", "tick", every=60, queue="sched")
    firer.noticed("notified", ["spawn", "schedule"])
    assert firer.enabled
    seconds = firer.seconds_until_next()
    assert seconds is not None and 0 < seconds <= 60
    polling = ScheduleFirer(app.client, ["other"])
    polling.polling = True
    assert polling.seconds_until_next() is None and not polling.enabled
    polling.noticed("timeout", [])
    assert polling.enabled, "without NOTIFY, each poll looks again"
