"""Step checkpoints: writes, reads, lease extension, survival across attempts."""

from __future__ import annotations

from teguh_engine_helpers import ts


def test_set_and_get_a_checkpoint(eng):
    task_id, run_id = eng.start("t", timeout=120)
    eng.at(3)
    eng.checkpoint(task_id, "step-1", {"result": "done"}, run_id)
    got = eng.get_checkpoint(task_id, "step-1")
    assert got["checkpoint_name"] == "step-1"
    assert got["state"] == {"result": "done"}
    assert got["status"] == "committed"
    assert got["owner_run_id"] == run_id
    assert got["updated_at"] == ts(3)
    assert eng.get_checkpoint(task_id, "missing") is None


def test_checkpoint_extends_the_lease(eng):  # B set_checkpoint_extends_claim_lease
    task_id, run_id = eng.start("t", timeout=60)
    assert eng.lease(run_id)["claim_expires_at"] == ts(60)
    eng.at(30)
    eng.checkpoint(task_id, "step-1", {"result": "done"}, run_id, extend_by=60)
    assert eng.lease(run_id)["claim_expires_at"] == ts(90)
    eng.at(50)
    eng.checkpoint(task_id, "step-2", {"result": "more"}, run_id, extend_by=60)
    assert eng.lease(run_id)["claim_expires_at"] == ts(110)
    eng.at(60)
    eng.checkpoint(task_id, "step-3", 3, run_id)  # no extension asked
    assert eng.lease(run_id)["claim_expires_at"] == ts(110)


def test_checkpoint_leaves_a_fresh_lease_alone(eng):
    # a step that would gain less than a tenth of the extension does not
    # rewrite the lease row: that update is non-HOT (claim_expires_at is
    # indexed) and would leave one dead tuple per step
    task_id, run_id = eng.start("t", timeout=60)
    row = f"select ctid::text from {eng.table('r')} where run_id = %s"
    where = eng.sql.value(row, run_id)
    for i, second in enumerate((1, 2, 5), start=1):
        eng.at(second)
        eng.checkpoint(task_id, f"step-{i}", i, run_id, extend_by=60)
        assert eng.lease(run_id)["claim_expires_at"] == ts(60)
    assert eng.sql.value(row, run_id) == where  # no new version of the row
    assert eng.lease(run_id)["heartbeats"] == 0
    eng.at(7)  # 60 s from now would gain 7 s, more than a tenth: extended
    eng.checkpoint(task_id, "step-4", 4, run_id, extend_by=60)
    assert eng.lease(run_id)["claim_expires_at"] == ts(67)
    assert eng.lease(run_id)["heartbeats"] == 1
    assert eng.checkpoints(task_id, run_id) == {f"step-{i}": (i, "committed") for i in range(1, 5)}


def test_checkpoint_keeps_a_lease_that_never_expires(eng):
    task_id, run_id = eng.start("t", timeout=0)
    assert eng.lease(run_id)["claim_expires_at"] is None
    eng.at(100)
    eng.checkpoint(task_id, "step-1", 1, run_id, extend_by=60)
    assert eng.lease(run_id)["claim_expires_at"] is None
    assert eng.checkpoints(task_id, run_id) == {"step-1": (1, "committed")}


def test_checkpoint_survives_a_retry(eng):  # A7
    task = eng.spawn("t", retry_strategy={"kind": "fixed", "base_seconds": 0})
    run = eng.claim_one()
    eng.checkpoint(task["task_id"], "step-A", "computed-value", run["run_id"])
    eng.fail(run["run_id"])
    run2 = eng.claim_one()
    assert run2["attempt"] == 2
    assert eng.checkpoints(task["task_id"], run2["run_id"]) == {"step-A": ("computed-value", "committed")}
    eng.complete(run2["run_id"])
    assert eng.state(task["task_id"]) == "completed"


def test_durable_multi_step(eng):  # A16
    task = eng.spawn("order", retry_strategy={"kind": "fixed", "base_seconds": 0})
    tid = task["task_id"]
    run = eng.claim_one()
    eng.checkpoint(tid, "fetch-order", {"id": 7}, run["run_id"])
    eng.checkpoint(tid, "charge-card", {"charged": 10}, run["run_id"])
    eng.fail(run["run_id"])
    run = eng.claim_one()
    assert run["attempt"] == 2
    cps = eng.checkpoints(tid, run["run_id"])
    assert set(cps) == {"fetch-order", "charge-card"}
    eng.checkpoint(tid, "ship-order", {"shipped": True}, run["run_id"])
    eng.emit("order.shipped", {"id": 7})
    eng.complete(run["run_id"], {"shipped": True})
    result = eng.result(tid)
    assert result["state"] == "completed" and result["result"] == {"shipped": True}


def test_checkpoints_preloaded_across_delayed_retries(eng):
    """B checkpoint_preloading_survives_retry, with our attempt numbering."""
    task = eng.spawn("t", retry_strategy={"kind": "fixed", "base_seconds": 10}, max_attempts=3)
    tid = task["task_id"]
    run1 = eng.claim_one()
    for i in (1, 2, 3):
        eng.checkpoint(tid, f"step-{i}", {"i": i}, run1["run_id"])
    eng.fail(run1["run_id"])
    eng.at(10)
    run2 = eng.claim_one()
    assert run2["attempt"] == 2
    cps = eng.checkpoints(tid, run2["run_id"])
    assert set(cps) == {"step-1", "step-2", "step-3"}
    assert eng.get_checkpoint(tid, "step-2")["owner_run_id"] == run1["run_id"]
    eng.checkpoint(tid, "step-4", {"i": 4}, run2["run_id"])
    eng.fail(run2["run_id"])
    eng.at(20)
    run3 = eng.claim_one()
    assert run3["attempt"] == 3
    assert set(eng.checkpoints(tid, run3["run_id"])) == {"step-1", "step-2", "step-3", "step-4"}


def test_checkpoints_belong_to_their_task(eng):
    a_id, a_run = eng.start("a")
    b_id, b_run = eng.start("b")
    eng.checkpoint(a_id, "shared-name", "from-a", a_run)
    eng.checkpoint(b_id, "shared-name", "from-b", b_run)
    assert eng.get_checkpoint(a_id, "shared-name")["state"] == "from-a"
    assert eng.get_checkpoint(b_id, "shared-name")["state"] == "from-b"
    assert eng.checkpoints(a_id, a_run) == {"shared-name": ("from-a", "committed")}


def test_checkpoint_states_hold_any_json(eng):
    task_id, run_id = eng.start("t")
    values = {
        "int": 1,
        "str": "x",
        "list": [1, {"a": None}],
        "null": None,
        "bool": False,
        "obj": {"k": [1.5]},
    }
    for name, value in values.items():
        eng.checkpoint(task_id, name, value, run_id)
    got = eng.checkpoints(task_id, run_id)
    assert {k: v[0] for k, v in got.items()} == values
    assert {v[1] for v in got.values()} == {"committed"}


def test_get_task_checkpoint_states_of_a_fresh_task_is_empty(eng):
    task_id, run_id = eng.start("t")
    assert eng.checkpoints(task_id, run_id) == {}


def test_checkpoints_are_kept_after_completion(eng):
    task_id, run_id = eng.start("t")
    eng.checkpoint(task_id, "s", 1, run_id)
    eng.complete(run_id)
    assert eng.get_checkpoint(task_id, "s")["state"] == 1


def claim_runs(eng, qty: int, timeout: int = 60) -> dict[str, dict]:
    """The worker's claim (claim_runs, with its checkpoints column), by task id."""
    rows = eng.sql.dicts("select * from teguh.claim_runs(%s, %s, %s, %s)", eng.q, "worker-1", timeout, qty)
    return {str(r["task_id"]): r for r in rows}


def test_claim_runs_hands_checkpoints_to_resumed_tasks_only(eng):
    # The claim reads c_ only for tasks that ran before (first_started_at set):
    # a first claim cannot have checkpoints. A batch mixing a retried task, a
    # taken-over one and fresh ones must still give each its own.
    retried = eng.spawn("t", retry_strategy={"kind": "fixed", "base_seconds": 10})["task_id"]
    expired = eng.spawn("t")["task_id"]
    first = claim_runs(eng, 2, timeout=5)
    assert {k: v["checkpoints"] for k, v in first.items()} == {str(retried): {}, str(expired): {}}
    eng.checkpoint(retried, "a", {"n": 1}, first[str(retried)]["run_id"])
    eng.checkpoint(expired, "b", [2], first[str(expired)]["run_id"])
    eng.fail(first[str(retried)]["run_id"])
    fresh = [eng.spawn("t")["task_id"] for _ in range(2)]
    eng.at(10)  # the retry is due and the other lease expired: this claim's sweeps ready both
    again = claim_runs(eng, 4)
    assert {k: v["checkpoints"] for k, v in again.items()} == {
        str(retried): {"a": {"n": 1}},
        str(expired): {"b": [2]},
        str(fresh[0]): {},
        str(fresh[1]): {},
    }


def test_limited_claim_hands_checkpoints_to_resumed_tasks(eng):
    retry = {"kind": "fixed", "base_seconds": 10}
    keyed = eng.spawn("t", concurrency_key="k", retry_strategy=retry)["task_id"]
    run = claim_runs(eng, 1)[str(keyed)]
    eng.checkpoint(keyed, "a", "x", run["run_id"])
    eng.fail(run["run_id"])
    fresh = eng.spawn("t", concurrency_key="other")["task_id"]
    eng.at(10)
    again = claim_runs(eng, 2)
    assert {k: v["checkpoints"] for k, v in again.items()} == {str(keyed): {"a": "x"}, str(fresh): {}}
