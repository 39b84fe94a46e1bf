"""The batches pages over real HTTP: the list (counts, state, progress, keyset paging) and one batch."""

from __future__ import annotations

import re

from teguh.app import App

from .conftest import Browserless, Q
from .test_http import HOSTILE


def run_items(app: App, batch_id: str, complete: int, fail: int) -> None:
    """Without a worker: complete `complete` items of the batch and fail `fail` for good, in claim order."""
    runs = app.client.claim_task(Q, "test-worker", 30, complete + fail)
    assert len(runs) == complete + fail
    for run in runs[:complete]:
        app.client.complete_run(Q, run.run_id, {"doubled": run.params["n"] * 2})
    for run in runs[complete:]:
        app.client.fail_run(Q, run.run_id, {"type": "ValueError", "message": HOSTILE}, retryable=False)


def test_batches_page_lists_batches_with_counts_state_and_progress(app: App, serve_dashboard) -> None:
    done = app.client.spawn_batch(Q, "double", [{"n": 1}, {"n": 2}])
    run_items(app, done.id, complete=2, fail=0)
    mixed = app.client.spawn_batch(Q, "double", [{"n": i} for i in range(5)])
    run_items(app, mixed.id, complete=2, fail=1)
    web = Browserless(serve_dashboard().url)
    home = web.get("/")
    assert 'href="/batches"' in home.body
    page = web.get("/batches")
    assert page.status == 200
    rows = re.findall(r'<tr id="batch-([0-9a-f-]+)" data-state="(\w+)"', page.body)
    assert rows == [(mixed.id, "running"), (done.id, "completed")], "newest first, with their states"
    mixed_row = page.body.split(f'id="batch-{mixed.id}"')[1].split("</tr>")[0]
    assert '<progress max="5" value="3">' in mixed_row and "3/5" in mixed_row
    assert "pending 2" in mixed_row and "completed 2" in mixed_row and "failed 1" in mixed_row
    assert f'href="/batches/{mixed.id}"' in mixed_row
    assert re.findall(r'id="batch-([0-9a-f-]+)"', web.get("/batches?state=completed").body) == [done.id]
    assert 'id="no-batches"' in web.get("/batches?queue=other").body


def test_batches_list_pages_by_keyset(app: App, serve_dashboard) -> None:
    ids = [app.client.spawn_batch(Q, "double", [{"n": i}]).id for i in range(25)]
    web = Browserless(serve_dashboard().url)
    first = web.get("/batches?limit=20")
    shown = re.findall(r'<tr id="batch-([0-9a-f-]+)"', first.body)
    assert shown == ids[::-1][:20]
    next_link = re.search(r'<a href="([^"]+)" id="next-page">', first.body).group(1).replace("&amp;", "&")
    second = web.get("/batches" + next_link)
    assert re.findall(r'<tr id="batch-([0-9a-f-]+)"', second.body) == ids[::-1][20:]
    assert 'id="next-page"' not in second.body and 'id="first-page"' in second.body
    assert web.get("/batches?after=not-a-uuid").status == 404


def test_one_batch_shows_its_counts_and_items_linking_to_their_tasks(app: App, serve_dashboard) -> None:
    batch = app.client.spawn_batch(Q, HOSTILE, [{"n": i} for i in range(4)])
    run_items(app, batch.id, complete=1, fail=1)
    web = Browserless(serve_dashboard().url)
    page = web.get(f"/batches/{batch.id}")
    assert page.status == 200
    assert "<script>alert" not in page.body and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.body
    assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", page.body), "a raw control character"
    assert '<progress max="4" value="2">' in page.body
    items = re.findall(r'<tr id="item-([0-9a-f-]+)" data-state="(\w+)"', page.body)
    assert sorted(t for t, _ in items) == sorted(batch.task_ids)
    assert sorted(s for _, s in items) == ["completed", "failed", "pending", "pending"]
    for task_id in batch.task_ids:
        assert f'href="/queues/{Q}/tasks/{task_id}"' in page.body
    assert "doubled" in page.body  # the completed item's result
    failed = web.get(f"/batches/{batch.id}?state=failed")
    assert re.findall(r'<tr id="item-[0-9a-f-]+" data-state="(\w+)"', failed.body) == ["failed"]
    assert 'id="next-page"' not in page.body
    # the "open by id" form redirects to the batch; unknown ids are 404s
    opened = web.get(f"/batches?id={batch.id}")
    assert opened.status == 303 and opened.header("Location") == f"/batches/{batch.id}"
    assert web.get("/batches/00000000-0000-0000-0000-000000000000").status == 404
    assert web.get("/batches/not-a-uuid").status == 404


def test_one_batch_pages_its_items_by_keyset_in_task_id_order(app: App, serve_dashboard) -> None:
    batch = app.client.spawn_batch(Q, "double", [{"n": i} for i in range(25)])
    web = Browserless(serve_dashboard().url)
    first = web.get(f"/batches/{batch.id}?limit=20")
    shown = re.findall(r'<tr id="item-([0-9a-f-]+)"', first.body)
    assert shown == sorted(batch.task_ids)[:20]
    next_link = re.search(r'<a href="([^"]+)" id="next-page">', first.body).group(1).replace("&amp;", "&")
    second = web.get(f"/batches/{batch.id}" + next_link)
    assert re.findall(r'<tr id="item-([0-9a-f-]+)"', second.body) == sorted(batch.task_ids)[20:]
