"""FakeClock drives schedules: each tick of a fake day fires once, DST included; jumps are missed windows."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from teguh import App
from teguh.testing import FakeClock

from .conftest import tasks_of

UTC = timezone.utc


def scheduled(app: App, name: str) -> list[str]:
    return [t["headers"]["scheduled_for"] for t in tasks_of(app, name)]


def test_a_fake_day_fires_each_hourly_tick_once(app: App) -> None:
    start = datetime(2026, 6, 1, 0, 30, tzinfo=UTC)
    with FakeClock(app, start=start) as clock:
        app.client.create_schedule("hourly", "tick", cron="@hourly", queue="sched")
        assert scheduled(app, "hourly") == [], "nothing fires at creation"
        clock.advance(hours=24)
        fired = scheduled(app, "hourly")
    expected = [(datetime(2026, 6, 1, 1, tzinfo=UTC) + timedelta(hours=h)).isoformat() for h in range(24)]
    assert fired == expected
    tasks = tasks_of(app, "hourly")
    assert {t["idempotency_key"] for t in tasks} == {f"schedule:hourly:{s}" for s in expected}


def test_new_york_spring_gap_fires_once_at_the_next_valid_instant(app: App) -> None:
    ny = ZoneInfo("America/New_York")
    # 2026-03-08: clocks jump from 02:00 to 03:00 EST->EDT; 02:30 does not exist
    with FakeClock(app, start=datetime(2026, 3, 7, 12, 0, tzinfo=ny)) as clock:
        app.client.create_schedule(
            "nightly", "tick", cron="30 2 * * *", timezone="America/New_York", queue="sched"
        )
        clock.advance(days=3)
        fired = [datetime.fromisoformat(s).astimezone(ny) for s in scheduled(app, "nightly")]
    assert [f.isoformat() for f in fired] == [
        "2026-03-08T03:00:00-04:00",  # the gap: once, at the next valid instant
        "2026-03-09T02:30:00-04:00",
        "2026-03-10T02:30:00-04:00",
    ]


def test_berlin_autumn_repeat_fires_once(app: App) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # 2026-10-25: 03:00 CEST -> 02:00 CET, so 02:30 happens twice
    with FakeClock(app, start=datetime(2026, 10, 24, 12, 0, tzinfo=berlin)) as clock:
        app.client.create_schedule(
            "nightly", "tick", cron="30 2 * * *", timezone="Europe/Berlin", queue="sched"
        )
        clock.advance(days=2)
        fired = [datetime.fromisoformat(s).astimezone(berlin) for s in scheduled(app, "nightly")]
    assert [f.isoformat() for f in fired] == ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]


@pytest.mark.parametrize(("catch_up", "expected"), [("skip", 0), ("one", 1), ("all", 10)])
def test_a_jump_over_ten_ticks_is_a_missed_window(app: App, catch_up: str, expected: int) -> None:
    start = datetime(2026, 6, 1, 0, 0, 10, tzinfo=UTC)
    with FakeClock(app, start=start) as clock:
        app.client.create_schedule("m", "tick", every=60, catch_up=catch_up, queue="sched")
        # ticks at 00:01 ... 00:10 are missed; now is 45 s after the last (more than half a period)
        clock.set(datetime(2026, 6, 1, 0, 10, 45, tzinfo=UTC), jump=True)
        assert len(tasks_of(app, "m")) == expected
        # and the timetable goes on: the next tick fires on time
        clock.advance(seconds=15)
        assert len(tasks_of(app, "m")) == expected + 1
        info = next(s for s in app.client.list_schedules() if s.name == "m")
        assert info.next_run_at == datetime(2026, 6, 1, 0, 12, tzinfo=UTC)


def test_max_catch_up_caps_all(app: App) -> None:
    start = datetime(2026, 6, 1, 0, 0, 10, tzinfo=UTC)
    with FakeClock(app, start=start) as clock:
        app.client.create_schedule("m", "tick", every=60, catch_up="all", max_catch_up=3, queue="sched")
        clock.set(datetime(2026, 6, 1, 0, 10, 45, tzinfo=UTC), jump=True)
        fired = scheduled(app, "m")
    assert fired == [datetime(2026, 6, 1, 0, m, tzinfo=UTC).isoformat() for m in (8, 9, 10)], "the latest 3"
