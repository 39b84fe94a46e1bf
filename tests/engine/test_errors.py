"""Errors: TG001-TG004 and AB001/AB002, with the right SQLSTATE and nothing written."""

from __future__ import annotations

import uuid

import pytest
from teguh_engine_helpers import BASE, Cases, Engine, snapshot, sqlstate, ts

DUMMY = "00000000-0000-7000-8000-000000000001"

# Every function that takes a queue name, called with plausible arguments.
QUEUE_CALLS = {
    "spawn_task": ("select * from teguh.spawn_task(%s, 't', '{}'::jsonb)", ()),
    "spawn_tasks": ('select * from teguh.spawn_tasks(%s, \'[{"task_name": "t"}]\'::jsonb)', ()),
    "claim_task": ("select * from teguh.claim_task(%s, 'w')", ()),
    "complete_run": ("select teguh.complete_run(%s, %s::uuid)", (DUMMY,)),
    "fail_run": ('select teguh.fail_run(%s, %s::uuid, \'{"type": "x"}\'::jsonb)', (DUMMY,)),
    "schedule_run": ("select teguh.schedule_run(%s, %s::uuid, now())", (DUMMY,)),
    "sleep_run": ("select * from teguh.sleep_run(%s, %s::uuid, 's', 10)", (DUMMY,)),
    "set_task_checkpoint_state": (
        "select teguh.set_task_checkpoint_state(%s, %s::uuid, 's', '1'::jsonb, %s::uuid)",
        (DUMMY, DUMMY),
    ),
    "get_task_checkpoint_state": (
        "select * from teguh.get_task_checkpoint_state(%s, %s::uuid, 's')",
        (DUMMY,),
    ),
    "get_task_checkpoint_states": (
        "select * from teguh.get_task_checkpoint_states(%s, %s::uuid, %s::uuid)",
        (DUMMY, DUMMY),
    ),
    "await_event": ("select * from teguh.await_event(%s, %s::uuid, %s::uuid, 's', 'e')", (DUMMY, DUMMY)),
    "emit_event": ("select teguh.emit_event(%s, 'e', '1'::jsonb)", ()),
    "cancel_task": ("select teguh.cancel_task(%s, %s::uuid)", (DUMMY,)),
    "retry_task": ("select * from teguh.retry_task(%s, %s::uuid)", (DUMMY,)),
    "extend_claim": ("select teguh.extend_claim(%s, %s::uuid, 10)", (DUMMY,)),
    "extend_claims": ("select * from teguh.extend_claims(%s, array[%s::uuid], 10)", (DUMMY,)),
    "get_task_result": ("select * from teguh.get_task_result(%s, %s::uuid)", (DUMMY,)),
    "next_due": ("select teguh.next_due(%s)", ()),
    "ticker": ("select teguh.ticker(%s)", ()),
    "cleanup_tasks": ("select teguh.cleanup_tasks(%s)", ()),
}

ALL_QUEUE_CALLS = {
    **QUEUE_CALLS,
    "create_queue": ("select teguh.create_queue(%s)", ()),
    "drop_queue": ("select teguh.drop_queue(%s)", ()),
}


@pytest.fixture
def jobs(db):
    db.fake_now(BASE)
    e = Engine(db)
    e.create()
    e.spawn("t", {"keep": True})
    return e


def test_invalid_queue_name_raises_tg001_everywhere(jobs, db):
    cases = Cases()
    before = snapshot(db)
    for fn, (query, args) in sorted(ALL_QUEUE_CALLS.items()):
        for name in ("Jobs", "a-b", "jobs; drop schema teguh cascade; --", "", "q" * 56, None):
            if fn == "ticker" and name is None:
                continue  # ticker(null) means every queue
            with cases.case(f"{fn}({name!r})"), sqlstate("TG001"):
                db.run(query, name, *args)
    cases.verify()
    assert snapshot(db) == before


def test_unknown_queue_raises_tg002_everywhere(jobs, db):
    cases = Cases()
    before = snapshot(db)
    for fn, (query, args) in sorted(QUEUE_CALLS.items()):
        with cases.case(fn):
            with sqlstate("TG002") as info:
                db.run(query, "nosuch", *args)
            assert "nosuch" in str(info.value)
            assert "does not exist" not in str(info.value).split("\n")[0]
    cases.verify()
    assert snapshot(db) == before


def test_ticker_without_queue_and_cleanup_all_do_not_need_a_queue(db):
    db.fake_now(BASE)
    assert db.value("select teguh.ticker()") == 0
    assert db.all("select * from teguh.cleanup_all_queues()") == []


def test_unknown_task_raises_tg003(jobs, db):
    missing = str(uuid.uuid4())
    before = snapshot(db)
    cases = Cases()
    for fn, query in (
        ("cancel_task", "select teguh.cancel_task(%s, %s::uuid)"),
        ("retry_task", "select * from teguh.retry_task(%s, %s::uuid)"),
        ("retry_task_spawn_new", "select * from teguh.retry_task(%s, %s::uuid, '{\"spawn_new\": true}')"),
        ("get_task_result", "select * from teguh.get_task_result(%s, %s::uuid)"),
    ):
        with cases.case(fn):
            with sqlstate("TG003") as info:
                db.run(query, "jobs", missing)
            assert missing in str(info.value)
    cases.verify()
    assert snapshot(db) == before


# -- TG004: invalid arguments ------------------------------------------------
@pytest.fixture
def live(db):
    """A queue with one running task: (engine, task_id, run_id)."""
    db.fake_now(BASE)
    e = Engine(db)
    e.create()
    task_id, run_id = e.start("t", {"n": 1})
    return e, task_id, run_id


TG004_CASES = {
    "spawn_empty_name": lambda e, t, r: e.spawn(""),
    "spawn_blank_name": lambda e, t, r: e.spawn("   "),
    "spawn_null_name": lambda e, t, r: e.sql.run(
        "select * from teguh.spawn_task(%s, null, '{}'::jsonb)", e.q
    ),
    "spawn_name_1025_bytes": lambda e, t, r: e.spawn("x" * 1025),
    "spawn_name_1026_bytes_513_chars": lambda e, t, r: e.spawn("é" * 513),
    # max_attempts 0 is valid since 0.2: unlimited (tests/engine/test_task_types.py)
    "spawn_max_attempts_fraction": lambda e, t, r: e.spawn("t", max_attempts=1.5),
    "spawn_max_attempts_negative": lambda e, t, r: e.spawn("t", max_attempts=-1),
    "spawn_unknown_option": lambda e, t, r: e.spawn("t", bogus=1),
    "spawn_camelcase_option": lambda e, t, r: e.spawn("t", maxAttempts=3),
    "spawn_empty_idempotency_key": lambda e, t, r: e.spawn("t", idempotency_key=""),
    "spawn_long_idempotency_key": lambda e, t, r: e.spawn("t", idempotency_key="k" * 1025),
    "spawn_tasks_one_bad_item": lambda e, t, r: e.spawn_many(
        [{"task_name": "ok", "params": {}}, {"task_name": "bad", "params": {}, "bogus": True}]
    ),
    "spawn_tasks_blank_name": lambda e, t, r: e.spawn_many(
        [{"task_name": "ok", "params": {}}, {"task_name": "", "params": {}}]
    ),
    "spawn_tasks_bad_max_attempts": lambda e, t, r: e.spawn_many(
        [{"task_name": "ok", "params": {}}, {"task_name": "t", "max_attempts": -1}]
    ),
    "checkpoint_empty_step": lambda e, t, r: e.checkpoint(t, "", 1, r),
    "checkpoint_blank_step": lambda e, t, r: e.checkpoint(t, "  ", 1, r),
    "checkpoint_long_step": lambda e, t, r: e.checkpoint(t, "s" * 1025, 1, r),
    "await_empty_step": lambda e, t, r: e.await_event(t, r, "", "ev"),
    "await_empty_event": lambda e, t, r: e.await_event(t, r, "step", ""),
    "await_long_event": lambda e, t, r: e.await_event(t, r, "step", "e" * 1025),
    "await_long_step": lambda e, t, r: e.await_event(t, r, "s" * 1025, "ev"),
    "emit_empty_event": lambda e, t, r: e.emit("", 1),
    "emit_blank_event": lambda e, t, r: e.emit("   ", 1),
    "emit_long_event": lambda e, t, r: e.emit("e" * 1025, 1),
    "emit_long_multibyte_event": lambda e, t, r: e.emit("é" * 513, 1),
    "sleep_empty_step": lambda e, t, r: e.sleep(r, "", duration=10),
    "sleep_long_step": lambda e, t, r: e.sleep(r, "s" * 1025, duration=10),
    "sleep_both_duration_and_wake_at": lambda e, t, r: e.sleep(r, "s", duration=10, wake_at=ts(10)),
    "sleep_neither_duration_nor_wake_at": lambda e, t, r: e.sleep(r, "s"),
    "extend_by_zero": lambda e, t, r: e.extend(r, 0),
    "extend_by_negative": lambda e, t, r: e.extend(r, -1),
    "extend_by_null": lambda e, t, r: e.extend(r, None),
    "extend_claims_by_zero": lambda e, t, r: e.extend_many([r], 0),
}


def test_invalid_arguments_raise_tg004_and_write_nothing(live, db):
    e, task_id, run_id = live
    before = snapshot(db)
    cases = Cases()
    for name, call in sorted(TG004_CASES.items()):
        with cases.case(name):
            with sqlstate("TG004"):
                call(e, task_id, run_id)
            assert snapshot(db) == before, "something was written"
    cases.verify()
    # the run still holds its task
    assert e.lease(run_id) is not None


def test_names_of_exactly_1024_bytes_are_accepted(live):
    e, task_id, run_id = live
    long_task = e.spawn("x" * 1024, idempotency_key="k" * 1024)
    assert long_task["created"] is True
    multibyte = e.spawn("é" * 512)  # 1024 bytes
    assert multibyte["created"] is True
    e.checkpoint(task_id, "s" * 1024, {"ok": 1}, run_id)
    assert e.get_checkpoint(task_id, "s" * 1024)["state"] == {"ok": 1}
    e.emit("e" * 1024, {"big": True})
    got = e.await_event(task_id, run_id, "w" * 1024, "e" * 1024)
    assert got["should_suspend"] is False and got["payload"] == {"big": True}


def test_max_attempts_null_is_accepted_as_the_queue_default(live):
    e, _, _ = live
    task = e.spawn("t", max_attempts=None)
    assert task["created"] is True
    assert e.task(task["task_id"])["max_attempts"] == 25


# -- AB001 / AB002 -----------------------------------------------------------
RUN_CALLS = {
    "complete_run": lambda e, t, r: e.complete(r, {"x": 1}),
    "fail_run": lambda e, t, r: e.fail(r),
    "fail_run_with_retry_at": lambda e, t, r: e.fail(r, retry_at=ts(7200)),
    "schedule_run": lambda e, t, r: e.schedule(r, ts(3600)),
    "sleep_run": lambda e, t, r: e.sleep(r, "nap", duration=60),
    "sleep_run_wake_at": lambda e, t, r: e.sleep(r, "nap", wake_at=ts(3600)),
    "set_task_checkpoint_state": lambda e, t, r: e.checkpoint(t, "s", 1, r),
    "set_task_checkpoint_state_extend": lambda e, t, r: e.checkpoint(t, "s", 1, r, extend_by=30),
    "extend_claim": lambda e, t, r: e.extend(r, 30),
    "await_event": lambda e, t, r: e.await_event(t, r, "w", "ev"),
    "await_event_with_timeout": lambda e, t, r: e.await_event(t, r, "w", "ev", timeout=30),
    "await_event_already_emitted": lambda e, t, r: e.await_event(t, r, "w", "emitted"),
    "get_task_checkpoint_states": lambda e, t, r: e.checkpoints(t, r),
}


def _prepared(db):
    db.fake_now(BASE)
    e = Engine(db)
    e.create()
    e.emit("emitted", {"pre": True})
    return e


def check_run_calls(e, db, code, task_id, run_id, must_name=()):
    """Every run-scoped call raises `code` and writes nothing."""
    before = snapshot(db)
    cases = Cases()
    for name, call in sorted(RUN_CALLS.items()):
        with cases.case(name):
            with sqlstate(code) as info:
                call(e, task_id, run_id)
            if must_name:
                text = str(info.value)
                assert any(str(x) in text for x in must_name), f"message names none of {must_name}: {text}"
            assert snapshot(db) == before, "something was written"
    cases.verify()


def test_cancelled_task_raises_ab001(db):
    e = _prepared(db)
    task_id, run_id = e.start("t")
    e.checkpoint(task_id, "earlier", {"v": 1}, run_id)
    e.at(5)
    e.cancel(task_id)
    check_run_calls(e, db, "AB001", task_id, run_id, must_name=(task_id, run_id))
    assert e.state(task_id) == "cancelled"


def test_unknown_run_raises_ab002(db):
    e = _prepared(db)
    task_id, run_id = e.start("t")
    bogus = str(uuid.uuid4())
    check_run_calls(e, db, "AB002", task_id, bogus, must_name=(bogus,))
    assert e.lease(run_id) is not None


def test_superseded_run_raises_ab002(db):
    """The run's lease expired and another run re-claimed the task."""
    e = _prepared(db)
    task_id, old_run = e.start("t", timeout=30)
    e.at(31)
    new = e.claim_one(worker="worker-2", timeout=300)
    assert new["task_id"] == task_id and new["run_id"] != old_run
    check_run_calls(e, db, "AB002", task_id, old_run, must_name=(old_run,))
    assert e.lease(new["run_id"]) is not None
    assert e.task(task_id)["state"] == "running"


def test_superseded_run_of_a_cancelled_task_raises_ab002(db):
    """AB001 only for the task's last run; an older run gets AB002."""
    e = _prepared(db)
    task_id, old_run = e.start("t", timeout=30)
    e.at(31)
    new = e.claim_one(worker="worker-2", timeout=300)
    e.cancel(task_id)
    check_run_calls(e, db, "AB002", task_id, old_run)
    check_run_calls(e, db, "AB001", task_id, new["run_id"])


ENDINGS = {
    "completed": lambda e, t, r: e.complete(r, {"done": True}),
    "failed_for_good": lambda e, t, r: e.fail(r),
    "failed_and_retried": lambda e, t, r: e.fail(r),
    "scheduled": lambda e, t, r: e.schedule(r, ts(600)),
    "slept": lambda e, t, r: e.sleep(r, "nap", duration=600),
    "awaiting": lambda e, t, r: e.await_event(t, r, "w", "never"),
}


def test_run_that_ended_raises_ab002(db):
    e = _prepared(db)
    cases = Cases()
    for ending, end in sorted(ENDINGS.items()):
        max_attempts = 1 if ending == "failed_for_good" else 5
        task = e.spawn("t", {"ending": ending}, max_attempts=max_attempts)
        # qty > 1: an earlier ending's retried task may be claimed too
        runs = {r["task_id"]: r["run_id"] for r in e.claim(qty=5)}
        task_id = task["task_id"]
        run_id = runs[task_id]
        end(e, task_id, run_id)
        before = snapshot(db)
        for call in sorted(RUN_CALLS):
            with cases.case(f"{ending}/{call}"):
                with sqlstate("AB002"):
                    RUN_CALLS[call](e, task_id, run_id)
                assert snapshot(db) == before, "something was written"
    cases.verify()


def test_checkpoint_for_another_task_is_refused(db):
    e = _prepared(db)
    _task_a, run_a = e.start("a")
    task_b = e.spawn("b")["task_id"]
    with pytest.raises(Exception) as info:
        e.checkpoint(task_b, "s", 1, run_a)
    assert getattr(info.value, "pgcode", None) in ("AB002", "TG004", "TG003"), info.value
    assert e.get_checkpoint(task_b, "s") is None
    assert e.lease(run_a) is not None


def test_error_classes_arrive_with_their_sqlstate(db):
    """Custom SQLSTATEs reach psycopg2 as DatabaseError with pgcode set."""
    import psycopg2

    e = _prepared(db)
    with pytest.raises(psycopg2.DatabaseError) as info:
        e.complete(uuid.uuid4())
    assert info.value.pgcode == "AB002"
