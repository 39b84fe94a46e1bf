"""Children and parents across worker processes: one wake-up for 1,000 children, and SIGKILLs.

Worker processes run `compose_app.py`; the ledger table (written by the
handlers through their own connections) counts runs, including those of a
process the test killed.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
from _support.polling import eventually

import teguh

from . import compose_app
from .conftest import Q, process_log

SIDE = compose_app.SIDE


def _ledger(dsn: str) -> compose_app.Ledger:
    return compose_app.Ledger(dsn)


def _children(app: teguh.App, parent_id: str, queue: str) -> int:
    with app.client.transaction() as conn, conn.cursor() as cur:
        cur.execute(f"select count(*) from teguh.t_{queue} where parent_task_id = %s", (parent_id,))
        return cur.fetchone()[0]


@pytest.mark.timeout(120)
def test_a_parent_of_1000_children_is_woken_once(dsn: str, app: teguh.App, spawn_process: Any) -> None:
    workers = [spawn_process(dsn, concurrency=8, batch_size=50) for _ in range(2)]
    spawned = app.client.spawn_task(Q, "fan-out", {"child": "noop", "n": 1000}, notify_done=True)
    result = app.client.wait_for_result(Q, spawned.task_id, timeout=100)
    assert result.state == "completed", [process_log(w) for w in workers]
    assert result.result == list(range(1000))
    ledger = _ledger(dsn)
    assert ledger.count(spawned.task_id, "fan-out-run") == 2, "one run spawns and waits, one run reads"
    assert ledger.count(spawned.task_id, "fan-out-gathered") == 1
    assert _children(app, spawned.task_id, Q) == 1000
    with app.client.transaction() as conn, conn.cursor() as cur:
        cur.execute("select count(*) from teguh.child_waits")
        assert cur.fetchone()[0] == 0, "the wait is gone once it ended"


@pytest.mark.timeout(120)
def test_a_child_killed_mid_run_is_retried_and_the_parent_gets_each_result_once(
    dsn: str, app: teguh.App, spawn_process: Any
) -> None:
    app.client.create_queue(SIDE)
    ledger = _ledger(dsn)
    # the parent's worker serves Q only; the children's worker SIDE only, and is killed
    spawn_process(dsn, queues=[Q], concurrency=2)
    doomed = spawn_process(dsn, queues=[SIDE], concurrency=4, claim_timeout=2, hold_child=60)
    spawned = app.client.spawn_task(
        Q, "fan-out", {"child": "slow-child", "n": 4, "queue": SIDE}, notify_done=True
    )
    eventually(
        lambda: sum(ledger.count(None, f"slow-child-start:{i}") for i in range(4)) == 4,
        60,
        what=lambda: process_log(doomed),
    )
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait(10)
    spawn_process(dsn, queues=[SIDE], concurrency=4, claim_timeout=2)
    result = app.client.wait_for_result(Q, spawned.task_id, timeout=60)
    assert (result.state, result.result) == ("completed", [0, 10, 20, 30])
    for i in range(4):
        assert ledger.count(None, f"slow-child-start:{i}") == 2, "killed once, run again once"
        assert ledger.count(None, f"slow-child-done:{i}") == 1
    assert ledger.count(spawned.task_id, "fan-out-run") == 2
    assert ledger.count(spawned.task_id, "fan-out-gathered") == 1
    assert _children(app, spawned.task_id, SIDE) == 4


@pytest.mark.timeout(120)
def test_a_parent_killed_while_its_children_run_resumes_without_spawning_again(
    dsn: str, app: teguh.App, spawn_process: Any
) -> None:
    app.client.create_queue(SIDE)
    ledger = _ledger(dsn)
    doomed = spawn_process(dsn, queues=[Q], concurrency=1, claim_timeout=2, hold_work=60)
    spawn_process(dsn, queues=[SIDE], concurrency=4, hold_child=1.0)
    spawned = app.client.spawn_task(
        Q, "busy-parent", {"child": "slow-child", "n": 3, "queue": SIDE}, notify_done=True
    )
    eventually(lambda: ledger.count(spawned.task_id, "work-start") == 1, 60, what=lambda: process_log(doomed))
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait(10)
    assert _children(app, spawned.task_id, SIDE) == 3
    # the new worker's run of the parent does the work step at once, then gathers
    spawn_process(dsn, queues=[Q], concurrency=1, claim_timeout=2)
    result = app.client.wait_for_result(Q, spawned.task_id, timeout=90)
    assert result.state == "completed", result
    assert result.result == [0, 10, 20]
    assert _children(app, spawned.task_id, SIDE) == 3, "the replay found its spawns' checkpoints"
    for i in range(3):
        assert ledger.count(None, f"slow-child-start:{i}") == 1
    assert ledger.count(spawned.task_id, "busy-parent-run") >= 2


@pytest.mark.timeout(120)
def test_a_crash_between_the_batch_spawn_and_its_checkpoint_spawns_nothing_twice(
    dsn: str, app: teguh.App, spawn_process: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `after_step_fn`: the children are committed, their ids not yet checkpointed
    monkeypatch.setenv("TEGUH_FAULT", "after_step_fn")
    doomed = spawn_process(dsn, concurrency=1, claim_timeout=2)
    monkeypatch.delenv("TEGUH_FAULT")
    spawned = app.client.spawn_task(Q, "fan-out", {"child": "square", "n": 5}, notify_done=True)
    assert doomed.wait(60) == 137, process_log(doomed)
    assert _children(app, spawned.task_id, Q) == 5
    spawn_process(dsn, concurrency=2, claim_timeout=2)
    result = app.client.wait_for_result(Q, spawned.task_id, timeout=60)
    assert (result.state, result.result) == ("completed", [0, 1, 4, 9, 16])
    assert _children(app, spawned.task_id, Q) == 5


@pytest.mark.timeout(120)
def test_cancelling_a_parent_while_its_children_complete_on_two_processes(
    dsn: str, app: teguh.App, spawn_process: Any
) -> None:
    # children ending in batches on two processes race the cascade over them:
    # a lock taken in the wrong order would show as a deadlock error here
    for _ in range(2):
        spawn_process(dsn, concurrency=8, batch_size=20)
    ledger = _ledger(dsn)
    for round_ in range(3):
        spawned = app.client.spawn_task(Q, "fan-out", {"child": "noop", "n": 300})
        eventually(lambda s=spawned: ledger.count(s.task_id, "fan-out-run") >= 1, 30)
        eventually(lambda s=spawned: _children(app, s.task_id, Q) == 300, 30)
        app.client.cancel_task(Q, spawned.task_id)
        assert app.client.get_task_result(Q, spawned.task_id).state == "cancelled", round_
        with app.client.transaction() as conn, conn.cursor() as cur:
            cur.execute(
                f"select count(*) from teguh.t_{Q} where parent_task_id = %s "
                "and state not in ('completed', 'cancelled')",
                (spawned.task_id,),
            )
            assert cur.fetchone()[0] == 0
            cur.execute("select count(*) from teguh.child_waits")
            assert cur.fetchone()[0] == 0


@pytest.mark.timeout(120)
def test_a_parent_cancelled_by_its_deadline_stops_its_child_running_in_another_process(
    dsn: str, app: teguh.App, spawn_process: Any
) -> None:
    # the parent's process sweeps its deadline; the child runs in the other one
    app.client.create_queue(SIDE)
    spawn_process(dsn, concurrency=2, queues=[Q])
    spawn_process(dsn, concurrency=2, queues=[SIDE])
    ledger = _ledger(dsn)
    parent = app.client.spawn_task(
        Q, "awaiting-parent", {"steps": 600, "hold": 0.1}, cancellation={"max_duration": 6}
    )
    (child,) = eventually(lambda: _child_ids(app, parent.task_id), 30)
    eventually(lambda: ledger.count(child, "tick") >= 1, 30)
    eventually(lambda: app.client.get_task_result(Q, parent.task_id).state == "cancelled", 30)
    assert app.client.get_task_result(SIDE, child).state == "cancelled"
    # the child's handler learns it at its next step, long before its 600 steps (60 s) are done
    eventually(lambda: ledger.count(child, "stepping-child-cancelled") == 1, 20)
    assert ledger.count(child, "stepping-child-done") == 0
    assert ledger.count(child, "tick") < 600
    with app.client.transaction() as conn, conn.cursor() as cur:
        cur.execute("select count(*) from teguh.child_waits")
        assert cur.fetchone()[0] == 0


def _child_ids(app: teguh.App, parent_id: str) -> list[str]:
    with app.client.transaction() as conn, conn.cursor() as cur:
        cur.execute(f"select task_id::text from teguh.t_{SIDE} where parent_task_id = %s", (parent_id,))
        return [r[0] for r in cur.fetchall()]
