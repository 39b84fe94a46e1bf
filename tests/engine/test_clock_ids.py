"""portable_uuidv7(): format, fake time in the timestamp prefix, uniqueness (A27, E10)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone

from teguh_engine_helpers import BASE, ts

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def millis(when: datetime) -> int:
    return (when - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(milliseconds=1)


def prefix_millis(value: str) -> int:
    return int(uuid.UUID(str(value)).hex[:12], 16)


def test_format_is_uuidv7(db):
    for _ in range(10):
        text = db.value("select teguh.portable_uuidv7()::text")
        assert len(text) == 36
        assert len(text.split("-")) == 5
        assert text.split("-")[2].startswith("7")
        assert UUID_RE.match(text), text
        u = uuid.UUID(text)
        assert u.version == 7
        assert u.variant == uuid.RFC_4122


def test_timestamp_prefix_equals_fake_now_millis(db):
    for when in (
        BASE,
        ts(0.123),
        ts(86400 * 400 + 0.999),
        datetime(2031, 12, 31, 23, 59, 59, 7000, tzinfo=timezone.utc),
    ):
        db.fake_now(when)
        value = db.value("select teguh.portable_uuidv7()")
        assert prefix_millis(value) == millis(when), (when, value)


def test_timestamp_prefix_follows_the_real_clock_without_fake_now(db):
    db.fake_now(None)
    before = millis(datetime.now(timezone.utc))
    value = db.value("select teguh.portable_uuidv7()")
    after = millis(datetime.now(timezone.utc))
    # server and test share a host: allow a little slack either side
    assert before - 5000 <= prefix_millis(value) <= after + 5000


def test_many_ids_at_one_fake_instant_are_distinct(db):
    db.fake_now(BASE)
    values = [r[0] for r in db.all("select teguh.portable_uuidv7() from generate_series(1, 5000)")]
    assert len(set(values)) == 5000
    assert {prefix_millis(v) for v in values} == {millis(BASE)}
    for v in values[:50]:
        assert UUID_RE.match(str(v))


def test_ids_sort_by_fake_time(db):
    ids = []
    for i in range(5):
        db.fake_now(ts(i))
        ids.append(str(db.value("select teguh.portable_uuidv7()")))
    assert ids == sorted(ids)


def test_spawned_task_ids_carry_fake_time(eng):
    eng.at(42.5)
    task = eng.spawn("t")
    assert prefix_millis(task["task_id"]) == millis(ts(42.5))
    eng.at(50)
    run = eng.claim_one()
    assert prefix_millis(run["run_id"]) == millis(ts(50))
