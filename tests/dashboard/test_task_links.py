"""The task page shows a child's progress and its parent (in another queue); its stream follows progress."""

from __future__ import annotations

import json
import re
from typing import Any

from _support.polling import eventually

from teguh.app import App

from .conftest import Browserless, Q
from .test_http import HOSTILE
from .test_live import Stream, watched_queues

PARENTS = "parents"


def report(app: App, task_id: str, run_id: str, done: int, total: int, message: str) -> None:
    progress = json.dumps({"done": done, "total": total, "message": message})
    app.client._report_progress(Q, task_id, run_id, progress)


def running_child(app: App) -> tuple[str, Any]:
    """(parent id, child's run): a parent in queue PARENTS spawned a child in Q, which is now running."""
    app.client.create_queue(PARENTS)
    parent = app.client.spawn_task(PARENTS, "parent", None).task_id
    (parent_run,) = app.client.claim_task(PARENTS, "w1")
    (child,) = app.client._spawn_children(Q, PARENTS, parent, parent_run.run_id, [{"task_name": "child"}])
    (run,) = app.client.claim_task(Q, "w2")
    assert run.task_id == child.task_id
    return parent, run


def test_task_page_shows_progress_and_links_the_parent_in_its_queue(app: App, serve_dashboard) -> None:
    parent, run = running_child(app)
    report(app, run.task_id, run.run_id, 2, 5, HOSTILE)
    web = Browserless(serve_dashboard().url)
    page = web.get(f"/queues/{Q}/tasks/{run.task_id}")
    assert page.status == 200
    progress = page.body.split('id="progress">')[1].split("</dd>")[0]
    assert '<progress max="5" value="2">' in progress and "2/5" in progress
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in progress and "<script>alert" not in page.body
    assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", page.body), "a raw control character"
    assert f'id="parent-link" href="/queues/{PARENTS}/tasks/{parent}"' in page.body
    assert web.get(f"/queues/{PARENTS}/tasks/{parent}").status == 200
    listed = web.get(f"/queues/{Q}").body.split(f'id="task-{run.task_id}"')[1].split("</tr>")[0]
    assert '<progress max="5" value="2">' in listed


def test_task_stream_sends_a_progress_update(app: App, serve_dashboard) -> None:
    _, run = running_child(app)
    report(app, run.task_id, run.run_id, 1, 3, "first")
    server = serve_dashboard()
    stream = Stream(server.url, f"/api/queues/{Q}/tasks/{run.task_id}/events")
    try:
        events = stream.events()
        event, data = next(events)
        assert event == "task"
        body = json.loads(data)
        assert body["state"] == "running"
        assert (body["progress"]["done"], body["progress"]["message"]) == (1, "first")
        eventually(lambda: Q in watched_queues(app), timeout=10)  # the stream's LISTEN is up
        report(app, run.task_id, run.run_id, 2, 3, "second")  # notifies teguh_progress '<q>:<id>'
        event, data = next(events)
        body = json.loads(data)
        assert event == "task"
        assert (body["state"], body["progress"]["done"], body["progress"]["total"]) == ("running", 2, 3)
        assert body["progress"]["message"] == "second"
    finally:
        stream.close()
