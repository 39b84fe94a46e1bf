"""A task the engine cancels by its deadline cancels its children, as cancel_task does.

Engine level, on one connection with the clock pinned (teguh.fake_now): a
parent in queue `jobs` with a child and a grandchild in queue `side`.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from .conftest import Q

SIDE = "side"
T0 = datetime(2030, 1, 1, tzinfo=timezone.utc)


def _at(db: Any, seconds: float) -> datetime:
    when = T0 + timedelta(seconds=seconds)
    db.fake_now(when)
    return when


def _spawn(db: Any, queue: str, name: str, **options: Any) -> str:
    sql = "select task_id from teguh.spawn_task(%s, %s, 'null', %s)"
    return str(db.value(sql, queue, name, json.dumps(options)))


def _claim(db: Any, queue: str) -> tuple[str, str]:
    (run_id, task_id) = db.one("select run_id, task_id from teguh.claim_task(%s, 'w', 3600, 1)", queue)
    return str(run_id), str(task_id)


def _child(db: Any, queue: str, parent_queue: str, parent_id: str, parent_run: str, name: str) -> str:
    items = json.dumps([{"task_name": name}])
    sql = "select task_id from teguh.spawn_children(%s, %s, %s, %s, %s)"
    return str(db.value(sql, queue, parent_queue, parent_id, parent_run, items))


def _state(db: Any, queue: str, task_id: str) -> str:
    return db.value(f"select state from teguh.t_{queue} where task_id = %s", task_id)


@pytest.fixture
def family(db: Any) -> dict[str, str]:
    """A parent (max_duration 60 s) awaiting a running child in SIDE, which has a pending grandchild."""
    db.fake_now(T0)
    db.run("select teguh.create_queue(%s)", Q)
    db.run("select teguh.create_queue(%s)", SIDE)
    top = _spawn(db, Q, "top", cancellation={"max_duration": 60})
    top_run, _ = _claim(db, Q)
    mid = _child(db, SIDE, Q, top, top_run, "mid")
    mid_run, _ = _claim(db, SIDE)
    leaf = _child(db, SIDE, SIDE, mid, mid_run, "leaf")
    suspended = db.value(
        "select should_suspend from teguh.await_children(%s, %s, %s, 'wait', %s)",
        Q,
        top,
        top_run,
        json.dumps([[SIDE, mid]]),
    )
    assert suspended
    return {"top": top, "top_run": top_run, "mid": mid, "mid_run": mid_run, "leaf": leaf}


def test_the_deadline_sweep_cancels_the_children_and_theirs(db: Any, family: dict[str, str]) -> None:
    _at(db, 59)
    db.run("select teguh.ticker()")
    assert [_state(db, q, family[k]) for q, k in ((Q, "top"), (SIDE, "mid"), (SIDE, "leaf"))] == [
        "sleeping",
        "running",
        "pending",
    ]
    _at(db, 61)
    db.run("select teguh.ticker(%s)", Q)  # the parent's queue only: the cascade crosses queues itself
    assert [_state(db, q, family[k]) for q, k in ((Q, "top"), (SIDE, "mid"), (SIDE, "leaf"))] == [
        "cancelled",
        "cancelled",
        "cancelled",
    ]
    assert db.value("select count(*) from teguh.child_waits") == 0
    assert db.value(f"select count(*) from teguh.r_{SIDE}") == 0, "the child's lease ended"
    with pytest.raises(Exception) as raised:
        db.run("select teguh.complete_run(%s, %s, '1')", SIDE, family["mid_run"])
    assert getattr(raised.value, "pgcode", None) == "AB001"


def test_a_retry_past_max_duration_cancels_the_children(db: Any, family: dict[str, str]) -> None:
    # a second parent fails while its child runs; the retry it asks for starts past its max_duration
    top = _spawn(db, Q, "top2", cancellation={"max_duration": 60})
    top_run, claimed = _claim(db, Q)
    assert claimed == top
    kid = _child(db, SIDE, Q, top, top_run, "kid")
    _at(db, 30)
    db.run('select teguh.fail_run(%s, %s, \'{"m": "x"}\', %s)', Q, top_run, T0 + timedelta(seconds=90))
    assert _state(db, Q, top) == "cancelled"
    assert _state(db, SIDE, kid) == "cancelled"
    # the other family is not touched
    assert [_state(db, q, family[k]) for q, k in ((Q, "top"), (SIDE, "mid"), (SIDE, "leaf"))] == [
        "sleeping",
        "running",
        "pending",
    ]


def test_a_task_without_children_cancelled_by_its_deadline_changes_nothing_else(
    db: Any, family: dict[str, str]
) -> None:
    plain = _spawn(db, SIDE, "plain", cancellation={"max_duration": 5})
    _claim(db, SIDE)  # the leaf: pending first in SIDE
    _, claimed = _claim(db, SIDE)
    assert claimed == plain
    before = db.all(
        f"select task_id, state, deadline_at, cancelled_at from teguh.t_{SIDE} where task_id <> %s "
        f"union all select task_id, state, deadline_at, cancelled_at from teguh.t_{Q} order by 1",
        plain,
    )
    waits = db.all("select * from teguh.child_waits")
    _at(db, 6)
    db.run("set track_functions = 'pl'")  # counts calls of plpgsql functions in this transaction
    cascaded = db.value(
        "with t as (select teguh.ticker(%s)) select pg_stat_get_xact_function_calls("
        "'teguh._cancel_children'::regproc) from t",
        SIDE,
    )
    assert _state(db, SIDE, plain) == "cancelled"
    assert not cascaded, "the guard keeps a task without children out of the cascade"
    after = db.all(
        f"select task_id, state, deadline_at, cancelled_at from teguh.t_{SIDE} where task_id <> %s "
        f"union all select task_id, state, deadline_at, cancelled_at from teguh.t_{Q} order by 1",
        plain,
    )
    assert after == before
    assert db.all("select * from teguh.child_waits") == waits


def test_a_fail_fast_batch_cancels_the_children_of_the_items_it_cancels(db: Any) -> None:
    db.fake_now(T0)
    db.run("select teguh.create_queue(%s)", Q)
    db.run("select teguh.create_queue(%s)", SIDE)
    (batch_id, ids) = db.one(
        "select batch_id, task_ids::text[] from teguh.spawn_batch(%s, 'item', '[1, 2]', "
        """'{"max_attempts": 1}', 'fail_fast')""",
        Q,
    )
    first_run, first = _claim(db, Q)
    second_run, second = _claim(db, Q)
    assert sorted([first, second]) == sorted(ids)
    kid = _child(db, SIDE, Q, second, second_run, "kid")
    grandkid_run, _ = _claim(db, SIDE)
    grandkid = _child(db, SIDE, SIDE, kid, grandkid_run, "grandkid")
    db.run("select teguh.fail_run(%s, %s, '\"boom\"')", Q, first_run)
    assert db.value("select state from teguh.get_batch(%s)", batch_id) == "failed"
    assert [_state(db, Q, second), _state(db, SIDE, kid), _state(db, SIDE, grandkid)] == ["cancelled"] * 3
