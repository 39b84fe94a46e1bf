"""A batch of 50,000 items: one atomic spawn, counted and paged like a small one."""

from __future__ import annotations

import time

import psycopg2
import pytest

from teguh.app import App

from .batch_app import Q

N = 50_000


@pytest.mark.timeout(120)
def test_fifty_thousand_items_spawn_in_one_call(app: App, dsn: str) -> None:
    items = [{"n": i, "payload": "x" * 20} for i in range(N)]
    started = time.monotonic()
    batch = app.client.spawn_batch(Q, "item", items, on_failure="fail_fast", on_complete="after", priority=1)
    elapsed = time.monotonic() - started
    assert batch.total == N and len(set(batch.task_ids)) == N
    info = app.client.get_batch(batch.id)
    assert (info.total, info.pending, info.running, info.completed) == (N, N, 0, 0)
    page = app.client.batch_results(batch.id, limit=1000)
    assert len(page) == 1000 and all(item.state == "pending" for item in page)
    # the items keep their order of ids and their params
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("select params->>'n', priority from teguh.tasks where task_id = %s::uuid",
                        (batch.task_ids[-1],))
            assert cur.fetchone() == (str(N - 1), 1)
    finally:
        conn.close()
    assert elapsed < 60, f"spawning {N} items took {elapsed:.1f} s"
    # fail_fast: the first failure cancels the 49,999 others in its commit
    (run,) = app.client.claim_task(Q, "w", qty=1)
    started = time.monotonic()
    app.client._fail_run_non_retryable(Q, run.run_id, '"boom"')
    cancel_elapsed = time.monotonic() - started
    info = app.client.get_batch(batch.id)
    assert (info.failed, info.cancelled, info.pending, info.state) == (1, N - 1, 0, "failed")
    assert info.on_complete_task_id is not None
    assert cancel_elapsed < 60, f"cancelling {N - 1} items took {cancel_elapsed:.1f} s"


def test_a_bad_item_in_a_large_batch_writes_nothing(app: App, dsn: str) -> None:
    items: list = [{"n": i} for i in range(N)]
    items[N - 1] = {"n": "\u0000"}  # jsonb cannot store U+0000: refused
    with pytest.raises(ValueError, match=r"items\[49999\]"):
        app.client.spawn_batch(Q, "item", items)
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("select (select count(*) from teguh.tasks), (select count(*) from teguh.batches)")
            assert cur.fetchone() == (0, 0)
    finally:
        conn.close()
