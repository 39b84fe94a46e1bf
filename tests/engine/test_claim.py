"""claim_task: leases, qty, inline sweeps, lease expiry and recovery."""

from __future__ import annotations

from teguh_engine_helpers import sqlstate, ts


def test_spawn_claim_complete(eng):  # A2
    spawned = eng.spawn("ping", {"val": 42})
    runs = eng.claim(qty=1)
    assert len(runs) == 1
    run = runs[0]
    assert run["task_name"] == "ping"
    assert run["task_id"] == spawned["task_id"]
    assert run["params"]["val"] == 42
    eng.complete(run["run_id"], {"ok": True})
    result = eng.result(spawned["task_id"])
    assert result["state"] == "completed"
    assert result["attempts"] == 1
    assert result["result"] == {"ok": True}


def test_claim_on_empty_queue_returns_nothing(eng):  # A3
    assert eng.claim(qty=5) == []


def test_claim_creates_a_lease_and_marks_the_task_running(eng):
    task = eng.spawn("t")
    eng.at(7)
    run = eng.claim_one(worker="worker-a", timeout=120)
    lease = eng.lease(run["run_id"])
    assert lease["task_id"] == task["task_id"]
    assert lease["attempt"] == 1
    assert lease["claimed_by"] == "worker-a"
    assert lease["claimed_at"] == ts(7)
    assert lease["claim_expires_at"] == ts(127)
    row = eng.task(task["task_id"])
    assert row["state"] == "running"
    assert row["first_started_at"] == ts(7)
    assert row["last_run_id"] == run["run_id"]
    assert eng.pending_row(task["task_id"]) is None


def test_claim_respects_qty(eng):
    ids = {eng.spawn("t", {"i": i})["task_id"] for i in range(5)}
    first = eng.claim(qty=3)
    second = eng.claim(qty=5)
    assert len(first) == 3 and len(second) == 2
    assert {r["task_id"] for r in first + second} == ids
    assert len({r["run_id"] for r in first + second}) == 5
    assert eng.claim(qty=5) == []


def test_each_claim_creates_a_new_run_id(eng):  # E2
    spawned = eng.spawn("t", max_attempts=5)
    seen = {spawned["run_id"]}
    for _ in range(3):
        run = eng.claim_one()
        assert run["run_id"] not in seen
        seen.add(run["run_id"])
        eng.fail(run["run_id"])


def test_claim_timeout_zero_never_expires(eng):  # E3
    task = eng.spawn("t")
    run = eng.claim_one(timeout=0)
    assert eng.lease(run["run_id"])["claim_expires_at"] is None
    eng.extend(run["run_id"], 30)
    assert eng.lease(run["run_id"])["claim_expires_at"] is None
    eng.at(10 * 365 * 86400)
    assert eng.claim(worker="other") == []
    eng.ticker()
    assert eng.lease(run["run_id"]) is not None
    assert eng.task(task["task_id"])["state"] == "running"
    eng.complete(run["run_id"], 1)
    assert eng.state(task["task_id"]) == "completed"


def test_first_started_at_is_kept_across_runs(eng):
    task = eng.spawn("t")
    eng.at(3)
    run = eng.claim_one()
    eng.schedule(run["run_id"], ts(60))
    eng.at(60)
    eng.claim_one()
    assert eng.task(task["task_id"])["first_started_at"] == ts(3)


def test_inline_sweep_wakes_scheduled_tasks_without_ticker(eng):  # A18
    task = eng.spawn("t")
    run = eng.claim_one()
    eng.schedule(run["run_id"], ts(0.5))
    assert eng.claim() == []
    eng.at(0.7)
    again = eng.claim_one()
    assert again["task_id"] == task["task_id"]
    eng.complete(again["run_id"])
    assert eng.state(task["task_id"]) == "completed"


def test_inline_sweep_picks_up_several_due_tasks(eng):
    ids = {eng.spawn("t", available_at=ts(10))["task_id"] for _ in range(3)}
    eng.at(20)
    runs = eng.claim(qty=3)
    assert {r["task_id"] for r in runs} == ids
    assert all(r["attempt"] == 1 for r in runs)


def test_expired_lease_is_recovered_by_the_next_claim(eng):
    """B claim_timeout_releases_run_to_new_worker, adapted."""
    task = eng.spawn("t")
    run_a = eng.claim_one(worker="worker-a", timeout=30)
    assert eng.lease(run_a["run_id"])["claim_expires_at"] == ts(30)
    eng.at(300)
    assert eng.task(task["task_id"])["state"] == "running"  # until someone recovers it
    run_b = eng.claim_one(worker="worker-b", timeout=45)
    assert run_b["task_id"] == task["task_id"]
    assert run_b["run_id"] != run_a["run_id"]
    assert run_b["attempt"] == 2
    lease = eng.lease(run_b["run_id"])
    assert lease["claimed_by"] == "worker-b"
    assert lease["claim_expires_at"] == ts(345)
    assert eng.lease(run_a["run_id"]) is None
    reason = eng.task(task["task_id"])["failure_reason"]
    assert "$ClaimTimeout" in (reason.get("type"), reason.get("name")), reason
    assert "worker-a" in str(reason)
    # the old run is fenced off
    with sqlstate("AB002"):
        eng.complete(run_a["run_id"], {"late": True})
    with sqlstate("AB002"):
        eng.checkpoint(task["task_id"], "s", 1, run_a["run_id"])
    with sqlstate("AB002"):
        eng.extend(run_a["run_id"], 30)
    with sqlstate("AB002"):
        eng.fail(run_a["run_id"])
    eng.complete(run_b["run_id"], {"ok": 2})
    result = eng.result(task["task_id"])
    assert result["state"] == "completed" and result["result"] == {"ok": 2}
    assert result["attempts"] == 2


def test_expired_but_unrecovered_run_can_still_finish(eng):
    task = eng.spawn("t")
    run = eng.claim_one(timeout=30)
    eng.at(100)
    eng.checkpoint(task["task_id"], "s", {"v": 1}, run["run_id"])
    eng.extend(run["run_id"], 10)
    assert eng.lease(run["run_id"])["claim_expires_at"] == ts(110)
    eng.at(500)
    eng.complete(run["run_id"], {"done": True})
    result = eng.result(task["task_id"])
    assert result["state"] == "completed" and result["result"] == {"done": True}
    assert result["attempts"] == 1


def test_expired_but_unrecovered_run_can_still_fail(eng):
    task = eng.spawn("t", max_attempts=3)
    run = eng.claim_one(timeout=30)
    eng.at(100)
    eng.fail(run["run_id"], {"type": "Mine", "message": "m"})
    assert eng.task(task["task_id"])["failure_reason"]["type"] == "Mine"
    assert eng.claim_one()["attempt"] == 2


def test_expired_lease_with_no_attempts_left_fails_the_task(eng):
    task = eng.spawn("t", max_attempts=1)
    eng.claim_one(worker="w1", timeout=10)
    eng.at(11)
    assert eng.claim() == []
    result = eng.result(task["task_id"])
    assert result["state"] == "failed"
    assert "$ClaimTimeout" in (result["failure_reason"].get("type"), result["failure_reason"].get("name"))
    assert result["finished_at"] == ts(11)
    assert eng.count("r") == 0


def test_expired_lease_follows_the_retry_strategy(eng):
    task = eng.spawn("t", retry_strategy={"kind": "fixed", "base_seconds": 30})
    eng.claim_one(timeout=10)
    eng.at(10)
    assert eng.claim() == []
    row = eng.task(task["task_id"])
    assert row["state"] == "sleeping"
    assert row["available_at"] == ts(40)
    eng.at(40)
    run = eng.claim_one()
    assert run["attempt"] == 2


def test_expiry_sweep_is_bounded_by_qty(eng):
    """B claim_expired_sweep_is_bounded_by_qty."""
    for i in range(5):
        eng.spawn("t", {"i": i})
    originals = {r["run_id"] for r in eng.claim(timeout=1, qty=5)}
    assert len(originals) == 5
    eng.at(10)

    def old_leases():
        return sum(1 for r in eng.rows("r") if r["run_id"] in originals)

    eng.claim(worker="b", qty=1, timeout=600)
    assert old_leases() == 4
    eng.claim(worker="b", qty=2, timeout=600)
    assert old_leases() == 2


def test_claim_skips_tasks_already_claimed(eng):
    a = eng.spawn("a")
    eng.claim_one()
    b = eng.spawn("b")
    assert eng.claim_one()["task_id"] == b["task_id"]
    assert eng.claim() == []
    assert a["task_id"] != b["task_id"]


def test_claim_never_hands_out_a_task_past_max_delay(eng):
    task = eng.spawn("t", cancellation={"max_delay": 60})
    eng.at(61)
    assert eng.claim() == []
    result = eng.result(task["task_id"])
    assert result["state"] == "cancelled"
    assert result["cancelled_at"] is not None


def test_claim_enforces_max_duration_on_a_retry(eng):
    """B claim_time_cancellation_preserves_terminal_run_history, adapted."""
    task = eng.spawn(
        "t",
        retry_strategy={"kind": "fixed", "base_seconds": 0},
        max_attempts=3,
        cancellation={"max_duration": 1},
    )
    run = eng.claim_one()
    eng.fail(run["run_id"])
    assert eng.pending_row(task["task_id"]) is not None
    eng.at(2)
    assert eng.claim() == []
    assert eng.state(task["task_id"]) == "cancelled"
    assert eng.pending_row(task["task_id"]) is None


def test_extend_claim_sets_expiry_to_now_plus_extend_by(eng):  # B extend_claim_updates_running_lease
    task_id, run_id = eng.start("t", timeout=60)
    eng.at(10)
    eng.extend(run_id, 30)
    assert eng.lease(run_id)["claim_expires_at"] == ts(40)
    eng.at(20)
    eng.extend(run_id, 5)  # may shorten: now + extend_by, not max()
    assert eng.lease(run_id)["claim_expires_at"] == ts(25)
    assert eng.task(task_id)["state"] == "running"


def test_extend_claim_keeps_the_run_alive_past_its_first_expiry(eng):
    task_id, run_id = eng.start("t", timeout=30)
    for t in (20, 40, 60, 80):
        eng.at(t)
        eng.extend(run_id, 30)
    eng.at(100)
    assert eng.claim(worker="thief") == []
    eng.complete(run_id, {"ok": 1})
    assert eng.result(task_id)["attempts"] == 1


def test_extend_claims_reports_each_run(eng):
    ok_task, ok_run = eng.start("ok", timeout=30)
    cancelled_task, cancelled_run = eng.start("cancelled", timeout=30)
    lost_task, lost_run = eng.start("lost", timeout=30)
    eng.cancel(cancelled_task)
    eng.complete(lost_run)
    never = "00000000-0000-7000-8000-00000000abcd"
    eng.at(10)
    got = eng.extend_many([ok_run, cancelled_run, lost_run, never], 50)
    assert got == {ok_run: "ok", cancelled_run: "cancelled", lost_run: "lost", never: "lost"}
    assert eng.lease(ok_run)["claim_expires_at"] == ts(60)
    assert eng.state(ok_task) == "running"
    assert eng.state(lost_task) == "completed"
    assert eng.extend_many([], 50) == {}
