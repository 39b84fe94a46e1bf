"""Client.queue_stats: counts per state, the oldest wait, recent failures and completions."""

from __future__ import annotations

import pytest
from _support.polling import eventually
from _support.workers import start_worker

import teguh

from .conftest import Q, claim_one


def test_counts_per_state(client: teguh.Client) -> None:
    empty = client.queue_stats(Q)
    assert empty.counts == dict.fromkeys(
        ("pending", "running", "sleeping", "completed", "failed", "cancelled"), 0
    )
    assert empty.oldest_pending_age is None and not empty.estimated

    client.spawn_task(Q, "f", None, max_attempts=1)
    client.fail_run(Q, claim_one(client).run_id, {"message": "x"})
    client.spawn_task(Q, "c", None)
    client.complete_run(Q, claim_one(client).run_id)
    client.spawn_task(Q, "s", None, retry_strategy={"kind": "fixed", "base_seconds": 600})
    client.fail_run(Q, claim_one(client).run_id, {"message": "later"})
    waiting = client.spawn_task(Q, "w", None).task_id
    client.await_event(Q, waiting, claim_one(client).run_id, "wait", "never")
    client.spawn_task(Q, "r", None)
    claim_one(client)
    client.cancel_task(Q, client.spawn_task(Q, "x", None).task_id)
    client.spawn_task(Q, "p", None)
    client.spawn_task(Q, "p", None)
    client.spawn_task(Q, "d", None, available_at=client.database_time(60))

    stats = client.queue_stats(Q)
    assert stats.queue == Q
    assert stats.counts == {
        "pending": 3,
        "running": 1,
        "sleeping": 2,
        "completed": 1,
        "failed": 1,
        "cancelled": 1,
    }
    assert stats.oldest_pending_age is not None and 0 <= stats.oldest_pending_age < 60
    assert (stats.failed_last_minute, stats.failed_last_hour) == (1, 1)
    assert not stats.estimated


def test_completions_by_workers_are_counted(app: teguh.App) -> None:
    @app.task("quick")
    def quick(params: object, ctx: teguh.TaskContext) -> int:
        return 1

    for _ in range(5):
        app.spawn_task("quick")
    worker = start_worker(app, claim_timeout=3, heartbeat_interval=0.2)
    try:
        eventually(lambda: app.client.queue_stats(Q).completed_last_minute == 5, timeout=20)
    finally:
        assert worker.stop(), "the worker did not stop"
    worker.raise_error()
    stats = app.client.queue_stats(Q)
    assert (stats.completed, stats.completed_last_hour) == (5, 5)


def test_unknown_queue(client: teguh.Client) -> None:
    with pytest.raises(teguh.QueueNotFound):
        client.queue_stats("nope")
