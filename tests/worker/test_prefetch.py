"""Prefetch: runs claimed ahead of free slots, handed back at once on stop."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from .conftest import Q, eventually


def _blocking_app(app: Any) -> tuple[threading.Event, threading.Event]:
    entered = threading.Event()
    release = threading.Event()

    @app.task("block")
    def block(params: Any) -> Any:
        entered.set()
        release.wait(30)
        return params

    return entered, release


@pytest.mark.timeout(60)
def test_prefetched_runs_hold_leases_and_are_handed_back_on_stop(
    app: Any, client: Any, start_worker: Any, db: Any
):
    entered, release = _blocking_app(app)
    ids = [client.spawn_task(Q, "block", i).task_id for i in range(4)]
    handle = start_worker(concurrency=1, prefetch=2, shutdown_timeout=20)
    assert entered.wait(10)
    # one running and two prefetched: three leases; the fourth task is still claimable
    eventually(lambda: db.value(f"select count(*) from teguh.r_{Q}") == 3)
    assert db.value(f"select count(*) from teguh.p_{Q}") == 1

    stopper = threading.Thread(target=handle.worker.stop)
    stopper.start()
    # while the running handler still blocks, the prefetched runs are back in p_
    eventually(lambda: db.value(f"select count(*) from teguh.p_{Q}") == 3)
    assert db.value(f"select count(*) from teguh.r_{Q}") == 1
    states = {client.get_task_result(Q, i).state for i in ids}
    assert states == {"running", "pending"}
    release.set()
    assert handle.stop(), "the worker did not stop"
    stopper.join(5)
    done = [i for i in ids if client.get_task_result(Q, i).state == "completed"]
    assert len(done) == 1
    # handing back is not a failure: attempts did not move
    assert all(client.get_task_result(Q, i).attempts == 1 for i in ids)


@pytest.mark.timeout(60)
def test_prefetch_zero_claims_only_free_slots(app: Any, client: Any, start_worker: Any, db: Any) -> None:
    entered, release = _blocking_app(app)
    for i in range(3):
        client.spawn_task(Q, "block", i)
    start_worker(concurrency=1, prefetch=0)
    assert entered.wait(10)
    eventually(lambda: db.value(f"select count(*) from teguh.r_{Q}") == 1)
    assert db.value(f"select count(*) from teguh.p_{Q}") == 2
    release.set()
    eventually(lambda: db.value(f"select count(*) from teguh.t_{Q} where state = 'completed'") == 3)
