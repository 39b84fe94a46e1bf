"""The hand-offs between a worker's threads: a fast queue costs no thread start and no pipe write per run."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from teguh import _notify
from teguh.client import Client
from teguh.worker._inflight import InFlight
from teguh.worker._schedules import ScheduleFirer

from .conftest import Q, eventually


def _row(n: int) -> dict[str, Any]:
    return {"task_id": f"t{n}", "run_id": f"r{n}", "attempt": 1, "task_name": "noop"}


@pytest.mark.timeout(90)
def test_a_fast_queue_reuses_its_threads_and_does_not_wake_the_loop_per_run(
    app: Any, client: Any, start_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts = {"submit": 0, "wake": 0, "due": 0, "turn": 0}
    submit, wake = ThreadPoolExecutor.submit, _notify.ListenWaiter.wake

    def counting(name: str, call: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return call(*args, **kwargs)

        return counted

    monkeypatch.setattr(ThreadPoolExecutor, "submit", counting("submit", submit))
    monkeypatch.setattr(_notify.ListenWaiter, "wake", counting("wake", wake))
    monkeypatch.setattr(Client, "_seconds_until_due", counting("due", Client._seconds_until_due))
    # called once at the top of each turn of the claim loop
    turn = counting("turn", ScheduleFirer.seconds_until_next)
    monkeypatch.setattr(ScheduleFirer, "seconds_until_next", turn)

    @app.task("noop")
    def noop(params: Any) -> None:
        return None

    # a wake-up lost between two threads would leave the loop in its idle wait
    # (up to poll_interval) with tasks ready: the drain must not stall
    handle = start_worker(concurrency=4, poll_interval=120)
    client.spawn_tasks(Q, [{"task_name": "noop", "params": n} for n in range(2000)])
    eventually(lambda: handle.worker.processed == 2000, timeout=40)
    # a slot thread whose buffer ran dry parks until the next claim: one
    # thread start per slot, not one per run
    assert counts["submit"] <= 4
    # every freed slot wakes the claim loop, but one write per turn of the loop
    # is enough (it was one or more per run)
    assert counts["wake"] <= counts["turn"] + 2
    assert counts["wake"] < 2000
    # the next due moment is read when a claim comes back short, not while
    # runs wait in the buffer for parked threads
    assert counts["due"] <= 10


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


@pytest.mark.timeout(30)
def test_parked_threads_are_woken_one_at_a_time_and_all_buffered_runs_are_taken() -> None:
    inflight = InFlight(Q, concurrency=3, prefetch=0, wake=lambda: None)
    taken: list[str] = []

    def slot() -> None:
        while (run := inflight.take()) is not None:
            taken.append(run.run_id)
            inflight.finish((run,))

    def parked() -> int:
        with inflight._lock:
            return inflight._parked

    inflight.hold([_row(0), _row(1), _row(2)])
    assert inflight.reserve_slots() == (3, 0)
    threads = [threading.Thread(target=slot, daemon=True) for _ in range(3)]
    for thread in threads:
        thread.start()
    eventually(lambda: parked() == 3, timeout=10)
    assert inflight.quiet() and inflight.reserve_slots() == (0, 3)
    with inflight._lock:  # (reentrant) the woken thread cannot move before we look
        inflight.hold([_row(3), _row(4), _row(5)])
        # one thread is woken; it wakes the next once it has taken its run
        assert (inflight._parked, inflight._grants, inflight.active) == (2, 1, 1)
    eventually(lambda: len(taken) == 6 and inflight.quiet(), timeout=10)
    assert sorted(taken) == [f"r{n}" for n in range(6)]
    inflight.close()
    inflight.take_unstarted()
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()
    assert inflight.active == 0
