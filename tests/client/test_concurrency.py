"""One Client shared by many threads: exclusive claims, and a pool that blocks rather than fails."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import teguh


def test_threads_never_claim_the_same_task_twice(dsn: str) -> None:
    total = 300
    with teguh.Client(dsn, max_connections=4) as client:
        client.create_queue("jobs")
        client.spawn_tasks("jobs", [{"task_name": "t", "params": {"i": i}} for i in range(total)])
        start = threading.Barrier(8)

        def worker(seed: int) -> list[str]:
            rng = random.Random(seed)
            seen: list[str] = []
            start.wait()
            while True:
                runs = client.claim_task("jobs", f"w{seed}", 60, rng.choice([1, 2, 5]))
                if not runs:
                    return seen
                for run in runs:
                    seen.append(run.task_id)
                    client.complete_run("jobs", run.run_id, {"by": seed})

        with ThreadPoolExecutor(8) as pool:
            claimed = [task for batch in pool.map(worker, range(8)) for task in batch]
    assert len(claimed) == total
    assert len(set(claimed)) == total


@pytest.mark.timing
def test_an_exhausted_pool_blocks_instead_of_raising(dsn: str) -> None:
    with teguh.Client(dsn, max_connections=1) as client:
        held = threading.Event()
        release = threading.Event()
        done = threading.Event()
        outcome: dict[str, Any] = {}

        def holder() -> None:
            with client.transaction():
                held.set()
                release.wait(30)

        def waiter() -> None:
            try:
                outcome["queues"] = client.list_queues()
            except BaseException as exc:  # recorded for the assertion below
                outcome["error"] = exc
            finally:
                done.set()

        threads = [threading.Thread(target=holder)]
        threads[0].start()
        assert held.wait(10)
        threads.append(threading.Thread(target=waiter))
        threads[1].start()
        # The waiter must still be blocked (not failed) while the only connection is held.
        assert not done.wait(0.5)
        release.set()
        assert done.wait(10)
        for thread in threads:
            thread.join(10)
        assert outcome == {"queues": []}
