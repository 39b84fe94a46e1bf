"""set_task_checkpoint_states: many steps' checkpoints in one statement (the client's group commit)."""

from __future__ import annotations

import psycopg2
import pytest
from teguh_engine_helpers import j, ts, uid


def write_many(eng, items, extend_by=None, sql=None):
    """items: (task_id, step, state, run_id); returns the ok flags in order."""
    rows = (sql or eng.sql).all(
        "select i, ok from teguh.set_task_checkpoint_states(%s, %s::uuid[], %s::text[], %s::jsonb[], "
        "%s::uuid[], %s)",
        eng.q,
        [uid(t) for t, _, _, _ in items],
        [s for _, s, _, _ in items],
        [j(v) for _, _, v, _ in items],
        [uid(r) for _, _, _, r in items],
        extend_by,
    )
    assert [r[0] for r in rows] == list(range(1, len(items) + 1))
    return [r[1] for r in rows]


def test_writes_the_steps_of_several_runs_at_once(eng):
    a, a_run = eng.start("a")
    b, b_run = eng.start("b")
    eng.at(2)
    oks = write_many(eng, [(a, "s1", {"x": 1}, a_run), (b, "s1", [2], b_run), (a, "s2", None, a_run)])
    assert oks == [True, True, True]
    assert eng.checkpoints(a, a_run) == {"s1": ({"x": 1}, "committed"), "s2": (None, "committed")}
    assert eng.checkpoints(b, b_run) == {"s1": ([2], "committed")}
    row = eng.checkpoint_row(b, "s1")
    assert row["owner_run_id"] == b_run
    assert row["updated_at"] == ts(2)


def test_the_first_write_of_a_step_wins(eng):
    a, a_run = eng.start("a")
    eng.checkpoint(a, "s1", "before", a_run)
    oks = write_many(eng, [(a, "s1", "again", a_run), (a, "s2", "first", a_run), (a, "s2", "second", a_run)])
    assert oks == [True, True, True]
    assert eng.checkpoints(a, a_run) == {"s1": ("before", "committed"), "s2": ("first", "committed")}


def test_a_run_without_its_lease_writes_nothing(eng):
    a, a_run = eng.start("a")
    b, b_run = eng.start("b")
    eng.complete(b_run)  # b's run holds no lease any more
    oks = write_many(eng, [(a, "s1", 1, a_run), (b, "s1", 2, b_run), (a, "s2", 3, b_run)])
    assert oks == [True, False, False]  # the last: a run paired with another task
    assert eng.checkpoint_row(b, "s1") is None
    assert eng.checkpoint_row(a, "s2") is None
    assert eng.checkpoints(a, a_run) == {"s1": (1, "committed")}


def test_a_lease_row_held_elsewhere_is_skipped_without_waiting(eng, sql_factory):
    a, a_run = eng.start("a")
    b, b_run = eng.start("b")
    holder = sql_factory()
    holder.conn.autocommit = False
    holder.run(f"select 1 from {eng.table('r')} where run_id = %s for update", b_run)
    try:
        other = sql_factory()
        other.run("set lock_timeout = '5s'")  # a wait would fail the test, not hang it
        oks = write_many(eng, [(a, "s1", 1, a_run), (b, "s1", 2, b_run)], sql=other)
        assert oks == [True, False]
    finally:
        holder.conn.rollback()
    assert eng.checkpoint_row(b, "s1") is None
    assert eng.checkpoints(a, a_run) == {"s1": (1, "committed")}


def test_extends_the_leases_that_need_it(eng):
    a, a_run = eng.start("a", timeout=60)
    eng.at(30)
    b, b_run = eng.start("b", timeout=60)  # its lease runs to 90 s: fresh
    write_many(eng, [(a, "s1", 1, a_run), (b, "s1", 1, b_run)], extend_by=60)
    assert eng.lease(a_run)["claim_expires_at"] == ts(90)
    assert eng.lease(a_run)["heartbeats"] == 1
    assert eng.lease(b_run)["claim_expires_at"] == ts(90)
    assert eng.lease(b_run)["heartbeats"] == 0
    write_many(eng, [(a, "s2", 1, a_run)])  # no extension asked
    assert eng.lease(a_run)["heartbeats"] == 1


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ("unequal", "arrays of equal length"),
        ("blank", "step name must not be blank"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(eng, items, message):
    a, a_run = eng.start("a")
    names = ["ok", "  "] if items == "blank" else ["ok"]
    states = ["1", "2"]
    with pytest.raises(psycopg2.Error) as info:
        eng.sql.run(
            "select * from teguh.set_task_checkpoint_states(%s, %s::uuid[], %s::text[], %s::jsonb[], "
            "%s::uuid[], null)",
            eng.q,
            [a, a],
            names,
            states,
            [a_run, a_run],
        )
    assert info.value.pgcode == "TG004"
    assert message in str(info.value)
    assert eng.checkpoints(a, a_run) == {}


def test_an_unknown_queue_is_refused(eng):
    a, a_run = eng.start("a")
    with pytest.raises(psycopg2.Error) as info:
        eng.sql.run(
            "select * from teguh.set_task_checkpoint_states('nope', %s::uuid[], %s::text[], %s::jsonb[], "
            "%s::uuid[], null)",
            [a],
            ["s"],
            ["1"],
            [a_run],
        )
    assert info.value.pgcode == "TG002"


def test_drop_queue_drops_the_step_functions(eng):
    eng.sql.run("select teguh.drop_queue(%s)", eng.q)
    left = eng.sql.value(
        "select count(*) from pg_proc where pronamespace = 'teguh'::regnamespace and proname in (%s, %s)",
        "_step_" + eng.q,
        "_steps_" + eng.q,
    )
    assert left == 0
