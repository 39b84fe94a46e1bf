"""`get_task` and `list_tasks` carry a child's `parent_task_id` and its last reported `progress`."""

from __future__ import annotations

import json

import teguh

from .conftest import Q, claim_one


def child_with_progress(client: teguh.Client) -> tuple[str, str]:
    """(parent id, child id): the child spawned by the running parent, then claimed and reporting 2/5."""
    parent = client.spawn_task(Q, "parent", None).task_id
    run = claim_one(client)
    (child,) = client._spawn_children(Q, Q, parent, run.run_id, [{"task_name": "child", "params": {}}])
    (child_run,) = client.claim_task(Q, "w2")
    assert child_run.task_id == child.task_id
    client._report_progress(
        Q, child.task_id, child_run.run_id, json.dumps({"done": 2, "total": 5, "message": "two of five"})
    )
    return parent, child.task_id


def test_get_task_returns_parent_and_progress_of_a_child(client: teguh.Client) -> None:
    parent, child = child_with_progress(client)
    info = client.get_task(Q, child)
    assert info.parent_task_id == parent
    assert (info.progress["done"], info.progress["total"], info.progress["message"]) == (2, 5, "two of five")
    top = client.get_task(Q, parent)
    assert top.parent_task_id is None and top.progress is None


def test_list_tasks_returns_parent_and_progress_of_a_child(client: teguh.Client) -> None:
    parent, child = child_with_progress(client)
    rows = {t.task_id: t for t in client.list_tasks(Q)}
    assert rows[child].parent_task_id == parent
    assert rows[child].progress["done"] == 2 and rows[child].progress["total"] == 5
    assert rows[parent].parent_task_id is None and rows[parent].progress is None
