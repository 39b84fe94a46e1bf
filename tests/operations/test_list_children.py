"""`Client.list_children`: a task's children from every queue, oldest first, keyset paged."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import teguh
from teguh.cli import main

from .conftest import Q, claim_one

SIDE = "ops_side"


def parent_with_children(client: teguh.Client, here: int, there: int) -> tuple[str, list[str]]:
    """(parent id, child ids in spawn order): `here` children in Q, then `there` in SIDE."""
    client.create_queue(SIDE)
    parent = client.spawn_task(Q, "parent", None).task_id
    run = claim_one(client)
    items = [{"task_name": "a", "params": i} for i in range(here)]
    spawned = client._spawn_children(Q, Q, parent, run.run_id, items)
    spawned += client._spawn_children(
        SIDE, Q, parent, run.run_id, [{"task_name": "b", "params": i} for i in range(there)]
    )
    return parent, [c.task_id for c in spawned]


def test_children_of_several_queues_are_listed_oldest_first_with_their_queue(client: teguh.Client) -> None:
    parent, ids = parent_with_children(client, 2, 2)
    other = client.spawn_task(Q, "unrelated", None).task_id  # not a child: not listed
    rows = client.list_children(Q, parent)
    assert [r.task_id for r in rows] == ids and other not in ids
    assert [r.queue for r in rows] == [Q, Q, SIDE, SIDE]
    assert [r.task_name for r in rows] == ["a", "a", "b", "b"]
    assert {r.parent_task_id for r in rows} == {parent}
    assert all(isinstance(r, teguh.TaskInfo) and r.state == "pending" for r in rows)
    assert client.list_children(Q, ids[0]) == []  # a task without children
    assert client.get_task(Q, ids[0]).queue is None  # only list_children sets it


def test_pages_follow_each_other_across_queues(client: teguh.Client) -> None:
    parent, ids = parent_with_children(client, 3, 3)
    first = client.list_children(Q, parent, limit=4)
    rest = client.list_children(Q, parent, limit=4, after=first[-1].task_id)
    assert [r.task_id for r in first] == ids[:4] and [r.task_id for r in rest] == ids[4:]


def test_bad_input_is_refused(client: teguh.Client) -> None:
    parent, _ = parent_with_children(client, 1, 0)
    with pytest.raises(teguh.TaskNotFound):
        client.list_children(Q, "00000000-0000-7000-8000-000000000000")
    with pytest.raises(teguh.TaskNotFound):
        client.list_children(SIDE, parent)  # the parent is not in that queue
    with pytest.raises(teguh.QueueNotFound):
        client.list_children("no_such_queue", parent)
    for bad in (0, 1001):
        with pytest.raises(teguh.InvalidArgument, match="limit"):
            client.list_children(Q, parent, limit=bad)
    with pytest.raises(teguh.InvalidArgument):
        client.list_children(Q, "not-a-uuid")


def test_the_engine_checks_the_limit_itself(client: teguh.Client) -> None:
    parent, _ = parent_with_children(client, 1, 0)
    with client.transaction() as conn, conn.cursor() as cur, pytest.raises(Exception, match="limit must be"):
        cur.execute("select * from teguh.list_children(%s, %s::uuid, 0)", (Q, parent))


def test_a_producer_role_may_list_children(client: teguh.Client, dsn: str) -> None:
    with client.transaction() as conn, conn.cursor() as cur:
        cur.execute("select 'list_children' = any(teguh._role_functions('producer'))")
        assert cur.fetchone()[0] is True


def test_task_show_prints_the_children_with_their_queues(client: teguh.Client, dsn: str) -> None:
    parent, ids = parent_with_children(client, 1, 1)
    result = CliRunner().invoke(main, ["--dsn", dsn, "task", "show", Q, parent])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["queue"] == Q and shown["task_id"] == parent
    assert shown["children"] == [
        {"queue": Q, "task_id": ids[0], "task_name": "a", "state": "pending"},
        {"queue": SIDE, "task_id": ids[1], "task_name": "b", "state": "pending"},
    ]
    leaf = json.loads(CliRunner().invoke(main, ["--dsn", dsn, "task", "show", SIDE, ids[1]]).stdout)
    assert leaf["children"] == [] and leaf["parent_task_id"] == parent
