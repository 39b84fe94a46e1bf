"""Queue registry: create/drop/list, name rules (TG001), defaults."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from teguh_engine_helpers import BASE, Cases, Engine, snapshot, sqlstate

PREFIXES = ("t", "p", "r", "c", "e", "w")


def queue_tables(db, q):
    return {
        r[0]
        for r in db.all(
            "select relname from pg_class where relnamespace = 'teguh'::regnamespace"
            " and relkind = 'r' and relname = any(%s)",
            [f"{p}_{q}" for p in PREFIXES],
        )
    }


def list_queues(db):
    return [r[0] for r in db.all("select * from teguh.list_queues()")]


def test_round_trip(db):
    assert list_queues(db) == []
    db.run("select teguh.create_queue('main')")
    db.run("select teguh.create_queue('main')")  # idempotent
    assert list_queues(db) == ["main"]
    assert queue_tables(db, "main") == {f"{p}_main" for p in PREFIXES}
    db.run("select teguh.drop_queue('main')")
    assert list_queues(db) == []
    assert queue_tables(db, "main") == set()


def test_list_queues_is_sorted_and_named_queue_name(db):
    for q in ("zeta", "alpha", "mid", "alpha2"):
        db.run("select teguh.create_queue(%s)", q)
    assert list_queues(db) == ["alpha", "alpha2", "mid", "zeta"]
    cols = db.dicts("select * from teguh.list_queues()")
    assert list(cols[0].keys()) == ["queue_name"]


def test_create_queue_twice_keeps_its_tasks(db):
    db.fake_now(BASE)
    e = Engine(db, "keep")
    e.create()
    task = e.spawn("t", {"a": 1})
    e.create()
    assert e.claim_one()["task_id"] == task["task_id"]


def test_registry_defaults(db):
    db.run("select teguh.create_queue('defaults')")
    row = db.dicts("select * from teguh.queues where queue_name = 'defaults'")[0]
    ttl = row["cleanup_ttl"]
    assert ttl in (timedelta(days=30), 30 * 86400), ttl
    assert row["cleanup_limit"] == 1000
    assert row["created_at"] is not None


def test_drop_unknown_queue_is_a_noop(db):
    db.run("select teguh.create_queue('other')")
    before = snapshot(db)
    db.run("select teguh.drop_queue('nosuch')")
    assert snapshot(db) == before


def test_drop_queue_removes_its_data_and_leaves_others(db):
    db.fake_now(BASE)
    a, b = Engine(db, "qa"), Engine(db, "qb")
    a.create()
    b.create()
    a.spawn("t")
    kept = b.spawn("t")
    db.run("select teguh.drop_queue('qa')")
    assert list_queues(db) == ["qb"]
    assert queue_tables(db, "qa") == set()
    with sqlstate("TG002"):
        a.spawn("t")
    assert b.claim_one()["task_id"] == kept["task_id"]


def test_recreated_queue_starts_empty(db):
    db.fake_now(BASE)
    e = Engine(db, "again")
    e.create()
    e.spawn("t", idempotency_key="k")
    e.emit("ev", 1)
    db.run("select teguh.drop_queue('again')")
    e.create()
    assert e.claim(qty=10) == []
    assert e.count("t") == 0 and e.count("e") == 0
    assert e.spawn("t", idempotency_key="k")["created"] is True


BAD_NAMES = [
    "Jobs",
    "1abc",
    "a-b",
    'a"b',
    "a b",
    "a;b",
    "jobs; drop schema teguh cascade; --",
    "",
    " ",
    "_jobs",
    "jobs ",
    "JOBS",
    "jöbs",
    "a.b",
    "q" * 56,
    "a" + "b" * 55,
]


def test_invalid_queue_names_are_rejected_and_nothing_written(db):
    before = snapshot(db)
    cases = Cases()
    for name in [*BAD_NAMES, None]:
        with cases.case(repr(name)[:40]):
            with sqlstate("TG001") as info:
                db.run("select teguh.create_queue(%s)", name)
            message = str(info.value).lower()
            # the error names the rule
            assert "a-z" in message or "lowercase" in message or "55" in message, message
            assert snapshot(db) == before, "something was written"
    cases.verify()
    assert db.value("select count(*) from pg_namespace where nspname = 'teguh'") == 1
    assert list_queues(db) == []


def test_valid_queue_names_are_accepted(db):
    names = ["a", "jobs", "a1_b2", "emails_v2", "q" * 55, "a" + "_" * 54]
    for name in names:
        db.run("select teguh.create_queue(%s)", name)
        assert queue_tables(db, name) == {f"{p}_{name}" for p in PREFIXES}, name
    assert list_queues(db) == sorted(names)


def test_longest_queue_name_is_fully_usable(db, listener_factory):
    db.fake_now(BASE)
    name = "q" * 55
    e = Engine(db, name)
    e.create()
    listener = listener_factory(f"teguh_{name}")
    task = e.spawn("t")
    assert [n[0] for n in listener.collect(db)] == [f"teguh_{name}"]
    t_id, r_id = task["task_id"], e.claim_one()["run_id"]
    assert e.await_event(t_id, r_id, "s", "ev")["should_suspend"]
    e.emit("ev", 1)
    run = e.claim_one()
    e.complete(run["run_id"], 2)
    assert e.result(t_id)["state"] == "completed"
    e.at(86400 * 40)
    assert e.ticker() == 0
    assert e.cleanup() == 1
    db.run("select teguh.drop_queue(%s)", name)
    assert list_queues(db) == []


NAME_RULE = re.compile(r"^[a-z][a-z0-9_]*$")


@pytest.mark.slow
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    name=st.one_of(
        st.text(max_size=60),
        st.from_regex(r"[a-z][a-z0-9_]{0,60}", fullmatch=True),
        st.text(alphabet="abcXYZ019_- ;\"'", max_size=58),
    )
)
def test_queue_name_rule_property(db, name):
    if "\x00" in name:
        return  # cannot be sent as a text parameter at all
    valid = bool(NAME_RULE.match(name)) and len(name.encode()) <= 55
    if valid:
        db.run("select teguh.create_queue(%s)", name)
        assert name in list_queues(db)
        db.run("select teguh.drop_queue(%s)", name)
        assert name not in list_queues(db)
    else:
        with sqlstate("TG001"):
            db.run("select teguh.create_queue(%s)", name)
        assert list_queues(db) == []
