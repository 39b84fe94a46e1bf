"""await_event / emit_event: suspension, wake-up, first write wins, timeouts."""

from __future__ import annotations

from teguh_engine_helpers import j, sqlstate, ts


def test_await_then_emit(eng):  # A9
    task_id, run_id = eng.start("t")
    got = eng.await_event(task_id, run_id, "wait-for-signal", "order.shipped")
    assert got["should_suspend"] is True
    assert got["payload"] is None
    row = eng.task(task_id)
    assert row["state"] == "sleeping"
    assert row["wake_event"] == "order.shipped"
    assert eng.lease(run_id) is None
    waits = eng.waits_of(task_id)
    assert len(waits) == 1 and waits[0]["event_name"] == "order.shipped"
    assert waits[0]["step_name"] == "wait-for-signal"
    assert eng.claim() == []

    eng.at(5)
    eng.emit("order.shipped", {"tracking": "ABC123"})
    assert eng.task(task_id)["state"] == "pending"
    p = eng.pending_row(task_id)
    assert p["wake_event"] == "order.shipped"
    assert p["event_payload"] == {"tracking": "ABC123"}
    assert p["attempt"] == 1
    assert eng.waits_of(task_id) == []
    run = eng.claim_one()
    assert run["task_id"] == task_id
    assert run["wake_event"] == "order.shipped"
    assert run["event_payload"] == {"tracking": "ABC123"}
    assert run["attempt"] == 1
    cps = eng.checkpoints(task_id, run["run_id"])
    assert cps["wait-for-signal"] == ({"tracking": "ABC123"}, "committed")
    again = eng.await_event(task_id, run["run_id"], "wait-for-signal", "order.shipped")
    assert again == {
        "should_suspend": False,
        "payload": {"tracking": "ABC123"},
        "timed_out": False,
        "payload_sql_null": False,
    }
    eng.complete(run["run_id"])
    assert eng.state(task_id) == "completed"


def test_emit_before_await_returns_at_once(eng):  # A10
    eng.emit("ready", {"pre": True})
    task_id, run_id = eng.start("t")
    got = eng.await_event(task_id, run_id, "step", "ready")
    assert got["should_suspend"] is False
    assert got["payload"] == {"pre": True}
    assert got["timed_out"] is False
    assert eng.lease(run_id) is not None
    assert eng.get_checkpoint(task_id, "step")["state"] == {"pre": True}


def test_event_stored_with_emit_time(eng):
    eng.at(12)
    eng.emit("e1", {"v": 1})
    rows = eng.rows("e", "event_name = 'e1'")
    assert len(rows) == 1
    assert rows[0]["payload"] == {"v": 1}
    assert rows[0]["emitted_at"] == ts(12)


def test_first_emit_wins(eng):
    eng.emit("e", {"v": 1})
    eng.at(30)
    eng.emit("e", {"v": 2})
    row = eng.rows("e", "event_name = 'e'")[0]
    assert row["payload"] == {"v": 1}
    assert row["emitted_at"] == ts(0)
    task_id, run_id = eng.start("t")
    assert eng.await_event(task_id, run_id, "s", "e")["payload"] == {"v": 1}


def test_second_emit_wakes_nobody(eng):
    eng.emit("e", {"v": 1})
    task_id, run_id = eng.start("t")
    # a task waiting on a *different* step after the first emit sees v1 at once
    assert eng.await_event(task_id, run_id, "s", "e")["payload"] == {"v": 1}
    other_id, other_run = eng.start("u")
    assert eng.await_event(other_id, other_run, "s", "other")["should_suspend"]
    eng.emit("e", {"v": 2})
    assert eng.task(other_id)["state"] == "sleeping"
    assert eng.claim() == []


def test_emit_with_sql_null_and_json_null_is_a_committed_null(eng):
    for emit, event in ((eng.emit_sql_null, "nullish"), (lambda e: eng.emit(e, None), "jsonnull")):
        task_id, run_id = eng.start("t")
        assert eng.await_event(task_id, run_id, "s", event)["should_suspend"]
        emit(event)
        run = eng.claim_one()
        assert run["task_id"] == task_id
        got = eng.await_event(task_id, run["run_id"], "s", event)
        assert got["should_suspend"] is False
        assert got["timed_out"] is False
        assert got["payload_sql_null"] is False  # 'null'::jsonb, not SQL NULL
        assert got["payload"] is None
        assert eng.get_checkpoint(task_id, "s")["status"] == "committed"
        eng.complete(run["run_id"])


def test_emit_null_before_await(eng):  # A23 tail: emit(nil) counts as emitted
    eng.emit_sql_null("n")
    task_id, run_id = eng.start("t")
    got = eng.await_event(task_id, run_id, "s", "n")
    assert got["should_suspend"] is False and got["payload_sql_null"] is False


def test_await_without_timeout_has_no_wake_time(eng):  # A23
    task_id, run_id = eng.start("t")
    assert eng.await_event(task_id, run_id, "s", "never")["should_suspend"] is True
    assert eng.task(task_id)["available_at"] is None
    eng.at(10 * 86400)
    assert eng.ticker() == 0
    assert eng.claim() == []
    eng.emit_sql_null("never")
    runs = eng.claim()
    assert len(runs) == 1
    eng.complete(runs[0]["run_id"])
    assert eng.state(task_id) == "completed"


def test_await_with_timeout_sets_the_wake_time(eng):
    task_id, run_id = eng.start("t")
    eng.at(5)
    assert eng.await_event(task_id, run_id, "s", "ev", timeout=600)["should_suspend"]
    row = eng.task(task_id)
    assert row["state"] == "sleeping"
    assert row["available_at"] == ts(605)
    assert row["wake_event"] == "ev"
    assert eng.waits_of(task_id)[0]["timeout_at"] == ts(605)


def test_await_timeout_resumes_with_timed_out(eng):  # A17, B event_timeout_wakes_sleeping_run
    task_id, run_id = eng.start("t")
    assert eng.await_event(task_id, run_id, "wait-step", "never.fires", timeout=1)["should_suspend"]
    eng.at(1.1)
    assert eng.ticker() >= 1
    run = eng.claim_one()
    assert run["task_id"] == task_id
    assert run["attempt"] == 1
    assert run["event_payload"] is None
    assert eng.waits_of(task_id) == []
    got = eng.await_event(task_id, run["run_id"], "wait-step", "never.fires", timeout=1)
    assert got == {"should_suspend": False, "payload": None, "timed_out": True, "payload_sql_null": True}
    cp = eng.get_checkpoint(task_id, "wait-step")
    assert cp["status"] == "timed_out"
    assert eng.checkpoints(task_id, run["run_id"])["wait-step"][1] == "timed_out"
    assert eng.waits_of(task_id) == []  # no new wait
    assert eng.lease(run["run_id"]) is not None
    eng.complete(run["run_id"])
    assert eng.state(task_id) == "completed"


def test_timed_out_wait_is_resumed_by_claim_without_ticker(eng):
    """B await_event_timeout_does_not_recreate_wait."""
    task_id, run_id = eng.start("t")
    eng.await_event(task_id, run_id, "wait", "ev", timeout=10)
    assert len(eng.waits_of(task_id)) == 1
    eng.at(9)
    assert eng.claim() == []
    eng.at(15)
    run = eng.claim_one()
    assert run["task_id"] == task_id
    assert eng.waits_of(task_id) == []
    got = eng.await_event(task_id, run["run_id"], "wait", "ev", timeout=10)
    assert got["should_suspend"] is False and got["timed_out"] is True and got["payload_sql_null"]
    assert eng.task(task_id)["state"] == "running"
    assert eng.waits_of(task_id) == []


def test_emit_after_timeout_but_before_any_sweep(eng):  # E5
    task_id, run_id = eng.start("t")
    eng.await_event(task_id, run_id, "wait", "late", timeout=10)
    eng.at(11)
    eng.emit("late", {"too": "late"})
    # the event is stored for everyone else ...
    assert eng.rows("e", "event_name = 'late'")[0]["payload"] == {"too": "late"}
    # ... but the timed-out waiter resumes with its timeout
    run = eng.claim_one()
    assert run["task_id"] == task_id
    got = eng.await_event(task_id, run["run_id"], "wait", "late", timeout=10)
    assert got["timed_out"] is True and got["payload_sql_null"] is True
    assert eng.get_checkpoint(task_id, "wait")["status"] == "timed_out"
    other_id, other_run = eng.start("u")
    got = eng.await_event(other_id, other_run, "wait", "late")
    assert got == {
        "should_suspend": False,
        "payload": {"too": "late"},
        "timed_out": False,
        "payload_sql_null": False,
    }


def test_emit_before_timeout_wins(eng):
    task_id, run_id = eng.start("t")
    eng.await_event(task_id, run_id, "wait", "ev", timeout=10)
    eng.at(9)
    eng.emit("ev", {"ok": 1})
    eng.at(20)
    assert eng.ticker() == 0
    run = eng.claim_one()
    got = eng.await_event(task_id, run["run_id"], "wait", "ev", timeout=10)
    assert got["timed_out"] is False and got["payload"] == {"ok": 1}


def test_await_timeout_zero_does_not_wait_forever(eng):
    task_id, run_id = eng.start("t")
    got = eng.await_event(task_id, run_id, "w", "nothing", timeout=0)
    if got["should_suspend"]:
        # suspended with an immediate timeout: the next claim resumes it
        run = eng.claim_one()
        got = eng.await_event(task_id, run["run_id"], "w", "nothing", timeout=0)
    assert got["should_suspend"] is False and got["timed_out"] is True


def test_several_waiters_all_wake(eng):
    ids = []
    for i in range(3):
        tid, rid = eng.start("t", {"i": i})
        assert eng.await_event(tid, rid, "s", "go")["should_suspend"]
        ids.append(tid)
    eng.emit("go", {"n": 1})
    runs = eng.claim(qty=10)
    assert {r["task_id"] for r in runs} == set(ids)
    for r in runs:
        assert r["event_payload"] == {"n": 1} and r["wake_event"] == "go"
        assert eng.await_event(r["task_id"], r["run_id"], "s", "go")["payload"] == {"n": 1}


def test_waiting_on_one_event_is_not_woken_by_another(eng):
    task_id, run_id = eng.start("t")
    eng.await_event(task_id, run_id, "s", "mine")
    eng.emit("theirs", 1)
    assert eng.claim() == []
    assert eng.task(task_id)["state"] == "sleeping"


def test_event_checkpoint_survives_a_failure(eng):
    task_id, run_id = eng.start("t", max_attempts=3)
    eng.await_event(task_id, run_id, "s", "ev")
    eng.emit("ev", {"k": "v"})
    run = eng.claim_one()
    eng.fail(run["run_id"])
    run = eng.claim_one()
    assert run["attempt"] == 2
    got = eng.await_event(task_id, run["run_id"], "s", "ev")
    assert got["should_suspend"] is False and got["payload"] == {"k": "v"}


def test_cancelled_waiter_is_not_requeued_by_emit(eng):  # A25
    task_id, run_id = eng.start("t")
    eng.await_event(task_id, run_id, "s", "payment.received")
    eng.cancel(task_id)
    eng.emit("payment.received", {"amount": 100})
    assert eng.claim() == []
    assert eng.state(task_id) == "cancelled"
    assert eng.pending_row(task_id) is None
    assert eng.waits_of(task_id) == []


def test_await_on_a_cancelled_run_raises_ab001(eng):
    task_id, run_id = eng.start("t")
    eng.cancel(task_id)
    with sqlstate("AB001"):
        eng.await_event(task_id, run_id, "s", "ev")


def test_emit_event_with_no_waiters_stores_the_payload(eng):  # E4 (storage half)
    eng.emit("lonely", [1, 2, 3])
    assert eng.rows("e", "event_name = 'lonely'")[0]["payload"] == [1, 2, 3]
    assert eng.claim() == []


# -- emit_event_first: what the emit did -------------------------------------------


def _emit_first(eng, event, payload="absent"):
    """emit_event_first with a JSON payload, or with none (SQL NULL) when left out."""
    if payload == "absent":
        return eng.sql.dicts("select * from teguh.emit_event_first(%s, %s)", eng.q, event)[0]
    return eng.sql.dicts(
        "select * from teguh.emit_event_first(%s, %s, %s::jsonb)", eng.q, event, j(payload)
    )[0]


def test_emit_event_first_says_whether_this_emit_stored_the_payload(eng):
    eng.at(3)
    assert _emit_first(eng, "approved:1", {"by": "grace"}) == {
        "first": True,
        "emitted_at": ts(3),
        "payload_unchanged": True,
    }
    eng.at(60)
    # a repeat names the first emit's time and whether its payload was the same
    assert _emit_first(eng, "approved:1", {"by": "grace"}) == {
        "first": False,
        "emitted_at": ts(3),
        "payload_unchanged": True,
    }
    assert _emit_first(eng, "approved:1", {"by": "linus"}) == {
        "first": False,
        "emitted_at": ts(3),
        "payload_unchanged": False,
    }
    assert eng.rows("e", "event_name = 'approved:1'")[0]["payload"] == {"by": "grace"}


def test_emit_event_first_counts_sql_null_as_json_null(eng):
    assert _emit_first(eng, "n")["first"] is True
    assert _emit_first(eng, "n", None) == {"first": False, "emitted_at": ts(0), "payload_unchanged": True}
    assert _emit_first(eng, "n", 0)["payload_unchanged"] is False


def test_emit_event_first_after_an_await_placeholder_is_first_and_wakes(eng):
    task_id, run_id = eng.start("t")
    assert eng.await_event(task_id, run_id, "s", "go")["should_suspend"]
    eng.at(7)
    assert _emit_first(eng, "go", 1) == {"first": True, "emitted_at": ts(7), "payload_unchanged": True}
    assert eng.state(task_id) == "pending"
    assert eng.claim_one()["task_id"] == task_id
    # the old function keeps its void result and still wakes waiters
    other_id, other_run = eng.start("u")
    assert eng.await_event(other_id, other_run, "s", "later")["should_suspend"]
    assert eng.sql.value("select pg_typeof(teguh.emit_event(%s, 'later', '2'))::text", eng.q) == "void"
    assert eng.state(other_id) == "pending"
