"""A worker drains a queue with several handlers running at once."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from .conftest import Q, eventually


@pytest.mark.timeout(60)
def test_drains_200_tasks_with_concurrency_8(app: Any, client: Any, db: Any, start_worker: Any) -> None:
    lock = threading.Lock()
    seen: Counter[int] = Counter()
    active = 0
    peak = 0

    @app.task("double")
    def double(params: Any, ctx: Any) -> Any:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
            seen[params["n"]] += 1
        try:
            return {"n": params["n"], "double": params["n"] * 2}
        finally:
            with lock:
                active -= 1

    handle = start_worker(concurrency=8)
    spawned = client.spawn_tasks(Q, [{"task_name": "double", "params": {"n": n}} for n in range(200)])
    assert len(spawned) == 200

    def all_completed() -> bool:
        return db.value("select count(*) from teguh.t_jobs where state = 'completed'") == 200

    eventually(all_completed, timeout=45)
    assert seen == Counter(range(200)), "every task ran exactly once"
    assert 1 <= peak <= 8
    rows = dict(db.all("select task_id::text, result from teguh.t_jobs"))
    for n, s in enumerate(spawned):
        assert rows[s.task_id] == {"n": n, "double": 2 * n}
    assert db.value("select count(*) from teguh.r_jobs") == 0, "no lease left behind"
    assert db.value("select count(*) from teguh.p_jobs") == 0
    assert db.value("select max(attempts) from teguh.t_jobs") == 1
    eventually(lambda: handle.worker.processed == 200, timeout=10)


@pytest.mark.timeout(60)
def test_handlers_run_in_parallel(app: Any, client: Any, start_worker: Any) -> None:
    # Four handlers must all be inside at once, or the barrier breaks.
    barrier = threading.Barrier(4, timeout=15)

    @app.task("meet")
    def meet(params: Any, ctx: Any) -> Any:
        return {"arrival": barrier.wait()}

    start_worker(concurrency=8)
    ids = [client.spawn_task(Q, "meet", {"i": i}, notify_done=True).task_id for i in range(4)]
    results = [client.wait_for_result(Q, task_id, timeout=30) for task_id in ids]
    assert [r.state for r in results] == ["completed"] * 4, [r.failure for r in results]
    assert sorted(r.result["arrival"] for r in results) == [0, 1, 2, 3]
    assert not barrier.broken
