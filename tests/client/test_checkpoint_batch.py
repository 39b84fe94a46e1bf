"""Group commit of step checkpoints (teguh._checkpoint_batch) and the client calls behind it."""

from __future__ import annotations

import threading

import pytest

import teguh
from teguh._checkpoint_batch import CheckpointBatcher
from teguh.errors import LeaseLost


class FakeWrites:
    """Records writes; the first single write blocks until `release` is set, so others queue up."""

    def __init__(self, lost: set[str] = frozenset(), batch_fails: bool = False) -> None:
        self.lock = threading.Lock()
        self.singles: list[str] = []
        self.batches: list[list[str]] = []
        self.lost = lost
        self.batch_fails = batch_fails
        self.entered = threading.Event()
        self.release = threading.Event()

    def one(self, queue, task_id, name, state, run_id, extend) -> None:
        first = not self.entered.is_set()
        self.entered.set()
        if first:
            assert self.release.wait(10)
        with self.lock:
            self.singles.append(name)
        if run_id in self.lost:
            raise LeaseLost("lost", queue=queue, task_id=task_id, run_id=run_id)

    def many(self, queue, items, extend) -> list[bool]:
        with self.lock:
            self.batches.append([it[1] for it in items])
        if self.batch_fails:
            raise RuntimeError("the batch statement failed")
        return [it[3] not in self.lost for it in items]


def run_concurrently(batcher: CheckpointBatcher, writes: FakeWrites, names: list[str], lost_runs=()):
    """The first name writes alone and blocks; the others queue behind it; then all are released."""
    errors: dict[str, BaseException] = {}

    def call(name: str) -> None:
        run = "lost-run" if name in lost_runs else f"run-{name}"
        try:
            batcher.write("q", (f"task-{name}", name, "1", run), 30)
        except BaseException as exc:
            errors[name] = exc

    first = threading.Thread(target=call, args=(names[0],))
    first.start()
    assert writes.entered.wait(10)
    others = [threading.Thread(target=call, args=(n,)) for n in names[1:]]
    for t in others:
        t.start()
    # every other caller is queued (not writing) before the first write returns
    deadline = threading.Event()
    for _ in range(1000):
        with batcher._lock:
            lane = batcher._lanes[("q", 30)]
            if len(lane.waiting) == len(names) - 1:
                break
        deadline.wait(0.01)
    writes.release.set()
    for t in [first, *others]:
        t.join(10)
        assert not t.is_alive()
    return errors


def test_a_lone_write_goes_alone_at_once() -> None:
    writes = FakeWrites()
    writes.release.set()
    CheckpointBatcher(writes.one, writes.many).write("q", ("t", "s", "1", "r"), None)
    assert writes.singles == ["s"]
    assert writes.batches == []


def test_writes_that_arrive_during_a_write_share_one_batch() -> None:
    writes = FakeWrites()
    batcher = CheckpointBatcher(writes.one, writes.many)
    errors = run_concurrently(batcher, writes, ["a", "b", "c", "d"])
    assert errors == {}
    assert writes.singles == ["a"]
    assert len(writes.batches) == 1
    assert sorted(writes.batches[0]) == ["b", "c", "d"]
    assert batcher._lanes[("q", 30)].in_flight == 0  # the lane is free again


def test_what_the_batch_cannot_write_is_written_alone_and_raises_to_its_caller() -> None:
    writes = FakeWrites(lost={"lost-run"})
    batcher = CheckpointBatcher(writes.one, writes.many)
    errors = run_concurrently(batcher, writes, ["a", "b", "c", "d"], lost_runs={"c"})
    assert set(errors) == {"c"}
    assert isinstance(errors["c"], LeaseLost)
    assert sorted(writes.singles) == ["a", "c"]  # c retried alone, b and d stored by the batch


def test_a_failed_batch_falls_back_to_single_writes() -> None:
    writes = FakeWrites(batch_fails=True)
    batcher = CheckpointBatcher(writes.one, writes.many)
    errors = run_concurrently(batcher, writes, ["a", "b", "c"])
    assert errors == {}
    assert sorted(writes.singles) == ["a", "b", "c"]


def test_concurrent_steps_through_the_client_are_all_stored(client: teguh.Client, queue: str) -> None:
    n = 12
    client.spawn_tasks(queue, [{"task_name": "t", "params": i} for i in range(n)])
    runs = client._claim_runs(queue, "w", 60, n)
    assert len(runs) == n
    batches: list[int] = []
    real_many = client._set_checkpoints_json

    def counting_many(q, items, extend):
        batches.append(len(items))
        return real_many(q, items, extend)

    client._set_checkpoints_json = counting_many  # type: ignore[method-assign]
    start = threading.Barrier(n)
    errors: list[BaseException] = []

    def steps(run: dict) -> None:
        try:
            start.wait(10)
            for k in range(5):
                client.set_checkpoint(queue, run["task_id"], f"s{k}", {"k": k}, run["run_id"], 60)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=steps, args=(r,)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    for run in runs:
        got = client.get_checkpoints(queue, run["task_id"], run["run_id"])
        assert got == {f"s{k}": {"k": k} for k in range(5)}
    assert sum(batches) <= 5 * n  # whatever was batched was written once


def test_the_batch_call_reports_a_lost_lease_and_the_single_call_raises(
    client: teguh.Client, queue: str
) -> None:
    client.spawn_tasks(queue, [{"task_name": "t", "params": i} for i in range(2)])
    a, b = client._claim_runs(queue, "w", 60, 2)
    client.complete_run(queue, b["run_id"], None)
    items = [(a["task_id"], "s", "1", a["run_id"]), (b["task_id"], "s", "2", b["run_id"])]
    assert client._set_checkpoints_json(queue, items, None) == [True, False]
    assert client.get_checkpoints(queue, a["task_id"], a["run_id"]) == {"s": 1}
    with pytest.raises(LeaseLost):
        client.set_checkpoint(queue, b["task_id"], "s", 2, b["run_id"])


def test_stored_items_are_released_before_the_batch_retries_the_others() -> None:
    writes = FakeWrites(lost={"lost-run"})
    retrying = threading.Event()
    finish_retry = threading.Event()
    real_one = writes.one

    def slow_retry(queue, task_id, name, state, run_id, extend) -> None:
        if run_id == "lost-run":
            retrying.set()
            assert finish_retry.wait(10)
        real_one(queue, task_id, name, state, run_id, extend)

    batcher = CheckpointBatcher(slow_retry, writes.many)
    done: dict[str, threading.Event] = {n: threading.Event() for n in "bcd"}
    errors: dict[str, BaseException] = {}

    def call(name: str) -> None:
        run = "lost-run" if name == "c" else f"run-{name}"
        try:
            batcher.write("q", (f"task-{name}", name, "1", run), 30)
        except BaseException as exc:
            errors[name] = exc
        if name in done:
            done[name].set()

    threads = [threading.Thread(target=call, args=("a",))]
    threads[0].start()
    assert writes.entered.wait(10)
    for n in "bcd":
        threads.append(threading.Thread(target=call, args=(n,)))
        threads[-1].start()
    for _ in range(1000):
        with batcher._lock:
            if len(batcher._lanes[("q", 30)].waiting) == 3:
                break
        retrying.wait(0.01)
    writes.release.set()
    assert retrying.wait(10)
    # c's lone retry is still running: the items the batch stored have returned (but the head, if it is not c)
    released = {n for n in "bd" if done[n].wait(0.5)}
    assert released, "no stored item was released before the retry finished"
    finish_retry.set()
    for t in threads:
        t.join(10)
    assert set(errors) == {"c"}
    assert isinstance(errors["c"], LeaseLost)
