"""The hand-offs between a worker's threads: a fast queue costs no thread start and no pipe write per run."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from teguh import _notify
from teguh.worker._inflight import InFlight

from .conftest import Q, eventually


def _row(n: int) -> dict[str, Any]:
    return {"task_id": f"t{n}", "run_id": f"r{n}", "attempt": 1, "task_name": "noop"}


@pytest.mark.timeout(60)
def test_a_fast_queue_reuses_its_threads_and_wakes_the_loop_once_per_wait(
    app: Any, client: Any, start_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts = {"submit": 0, "wake": 0, "wait": 0}
    submit, wake, wait = ThreadPoolExecutor.submit, _notify.ListenWaiter.wake, _notify.ListenWaiter.wait

    def counting(name: str, call: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return call(*args, **kwargs)

        return counted

    monkeypatch.setattr(ThreadPoolExecutor, "submit", counting("submit", submit))
    monkeypatch.setattr(_notify.ListenWaiter, "wake", counting("wake", wake))
    monkeypatch.setattr(_notify.ListenWaiter, "wait", counting("wait", wait))

    @app.task("noop")
    def noop(params: Any) -> None:
        return None

    handle = start_worker(concurrency=4)
    client.spawn_tasks(Q, [{"task_name": "noop", "params": n} for n in range(400)])
    eventually(lambda: handle.worker.processed == 400, timeout=45)
    # a slot thread whose buffer ran dry parks until the next claim: one
    # thread start per slot, not one per run
    assert counts["submit"] <= 4
    # every freed slot wakes the claim loop, but one write per wait is enough
    assert counts["wake"] <= counts["wait"] + 1
    assert counts["wake"] < 400 // 4


@pytest.mark.timeout(30)
def test_a_parked_thread_takes_the_next_claimed_run_and_ends_at_close() -> None:
    wakes: list[int] = []
    inflight = InFlight(Q, concurrency=2, prefetch=0, wake=lambda: wakes.append(inflight.active))
    taken: list[str] = []
    parked = threading.Event()
    original_wait = inflight._ready.wait

    def wait(*args: Any) -> Any:
        parked.set()
        return original_wait(*args)

    inflight._ready.wait = wait  # type: ignore[method-assign]

    def slot() -> None:
        while (run := inflight.take()) is not None:
            taken.append(run.run_id)
            inflight.finish((run,))

    inflight.hold([_row(1)])
    assert inflight.reserve_slots() == (1, 1)
    thread = threading.Thread(target=slot, daemon=True)
    thread.start()
    assert parked.wait(10), "the thread parks once the buffer is empty"
    assert taken == ["r1"]
    # its slot was given back, and the claim loop woken before that
    assert inflight.active == 0 and inflight.quiet()
    assert wakes and wakes[-1] == 1
    parked.clear()

    inflight.hold([_row(2)])
    # the parked thread takes the run: no new thread is started for it
    assert inflight.reserve_slots() == (0, 1)
    assert parked.wait(10)
    assert taken == ["r1", "r2"]
    assert inflight.active == 0

    inflight.close()
    assert inflight.take_unstarted() == []
    thread.join(10)
    assert not thread.is_alive(), "a parked thread ends when the worker closes"
    assert inflight.active == 0
