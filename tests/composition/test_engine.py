"""The engine side of composition: the cancel_task upgrade, late spawns of a cancelled parent, the CLI."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import teguh
from teguh.cli import main

from .conftest import Q

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "teguh" / "schema" / "teguh.sql"

OLD_CANCEL_TASK = """
create function teguh.cancel_task(q text, task_id uuid) returns void
language plpgsql as $$ begin perform teguh._cancel_task(q, task_id); end $$
"""


def test_reinstall_replaces_the_two_argument_cancel_task_and_keeps_its_grants(db: Any) -> None:
    role = f"teguh_admin_{uuid.uuid4().hex[:10]}"
    db.run(f"create role {role} nologin")
    try:
        db.run("drop function teguh.cancel_task(text, uuid, boolean)")
        db.run(OLD_CANCEL_TASK)
        db.run("select teguh.grant_admin(%s)", role)
        db.conn.commit()
        for _ in range(2):  # the upgrade, then a plain re-install
            with db.conn.cursor() as cur:
                cur.execute(SCHEMA_FILE.read_text())
            db.conn.commit()
            assert db.value("select to_regprocedure('teguh.cancel_task(text, uuid)')") is None
            assert db.value(
                "select has_function_privilege(%s, 'teguh.cancel_task(text, uuid, boolean)', 'execute')", role
            )
        # the 0.1 call still works
        db.run("select teguh.create_queue(%s)", Q)
        (task_id,) = db.one("select task_id from teguh.spawn_task(%s, 'x', '1')", Q)
        db.run("select teguh.cancel_task(%s, %s)", Q, task_id)
        assert db.value(f"select state from teguh.t_{Q} where task_id = %s", task_id) == "cancelled"
    finally:
        db.run("select teguh.revoke_all(%s)", role)
        db.run(f"drop role {role}")
        db.conn.commit()


def test_a_cancelled_parent_cannot_spawn_children(app: teguh.App) -> None:
    parent = app.client.spawn_task(Q, "parent", None)
    (run,) = app.client.claim_task(Q, "w", 30, 1)
    app.client.cancel_task(Q, parent.task_id)
    with pytest.raises(teguh.Cancelled):
        app.client._spawn_children(Q, Q, parent.task_id, run.run_id, [{"task_name": "child"}])
    with app.client.transaction() as conn, conn.cursor() as cur:
        cur.execute(f"select count(*) from teguh.t_{Q}")
        assert cur.fetchone()[0] == 1, "nothing was spawned"


def test_children_are_linked_and_a_replayed_spawn_is_not_relinked(app: teguh.App) -> None:
    parent = app.client.spawn_task(Q, "parent", None)
    (run,) = app.client.claim_task(Q, "w", 30, 1)
    items = [{"task_name": "child", "params": i, "idempotency_key": f"k{i}"} for i in range(3)]
    first = app.client._spawn_children(Q, Q, parent.task_id, run.run_id, items)
    again = app.client._spawn_children(Q, Q, parent.task_id, run.run_id, items)
    assert [r.created for r in first] == [True] * 3 and [r.created for r in again] == [False] * 3
    assert [r.task_id for r in first] == [r.task_id for r in again]
    for r in first:
        assert app.client._get_task_links(Q, r.task_id) == (None, parent.task_id, Q)
    assert app.client._get_task_links(Q, parent.task_id) == (None, None, None)


def test_await_children_refuses_bad_input_and_writes_nothing(app: teguh.App) -> None:
    parent = app.client.spawn_task(Q, "parent", None)
    (run,) = app.client.claim_task(Q, "w", 30, 1)
    stranger = app.client.spawn_task(Q, "other", None)
    with pytest.raises(teguh.InvalidArgument, match="not a child"):
        app.client._await_children(Q, parent.task_id, run.run_id, "$wait", [(Q, stranger.task_id)])
    with pytest.raises(teguh.InvalidArgument, match="not a child"):
        app.client._await_children(Q, parent.task_id, run.run_id, "$wait", [(Q, str(uuid.uuid4()))])
    with pytest.raises(teguh.QueueNotFound):
        app.client._await_children(Q, parent.task_id, run.run_id, "$wait", [("nowhere", stranger.task_id)])
    with app.client.transaction() as conn, conn.cursor() as cur:
        cur.execute(f"select count(*) from teguh.c_{Q}")
        assert cur.fetchone()[0] == 0
        cur.execute("select count(*) from teguh.child_waits")
        assert cur.fetchone()[0] == 0
    assert app.client.get_task_result(Q, parent.task_id).state == "running"


def test_cli_task_cancel_no_children(dsn: str, app: teguh.App) -> None:
    parent = app.client.spawn_task(Q, "parent", None)
    (run,) = app.client.claim_task(Q, "w", 30, 1)
    (child,) = app.client._spawn_children(Q, Q, parent.task_id, run.run_id, [{"task_name": "child"}])
    out = CliRunner().invoke(main, ["--dsn", dsn, "task", "cancel", Q, parent.task_id, "--no-children"])
    assert out.exit_code == 0, out.output
    assert app.client.get_task_result(Q, child.task_id).state == "pending"
    out = CliRunner().invoke(main, ["--dsn", dsn, "task", "cancel", Q, parent.task_id])
    assert out.exit_code == 0, out.output
    assert app.client.get_task_result(Q, child.task_id).state == "cancelled"
