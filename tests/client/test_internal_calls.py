"""The Client's calls for the worker, the CLI, the test tools and Django (teguh/_sql.py's statements)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

import teguh


def test_database_time_adds_the_offset_on_the_database_clock(client: teguh.Client) -> None:
    now = client.database_time()
    later = client.database_time(3600)
    assert now.tzinfo is not None
    assert timedelta(minutes=59) < later - now < timedelta(minutes=61)
    real = client._clock_timestamp()
    assert abs(real - now) < timedelta(minutes=1)


def test_claim_complete_and_seconds_until_due(client: teguh.Client, queue: str) -> None:
    assert client._seconds_until_due(queue) is None
    spawned = client.spawn_task(queue, "t", {"x": 1})
    rows = client._claim_runs(queue, "w1", 30, 5)
    assert len(rows) == 1
    row = rows[0]
    assert row["task_id"] == spawned.task_id and isinstance(row["run_id"], str)
    assert row["params"] == {"x": 1}
    info = client._get_task_info(queue, spawned.task_id)
    assert info is not None
    assert (info["state"], info["claimed_by"], info["task_name"]) == ("running", "w1", "t")
    outcomes = client._complete_runs(queue, [row["run_id"]], [json.dumps({"ok": True})])
    assert outcomes == {row["run_id"]: "ok"}
    result = client.get_task_result(queue, spawned.task_id)
    assert (result.state, result.result) == ("completed", {"ok": True})
    info = client._get_task_info(queue, spawned.task_id)
    assert info is not None and info["claimed_by"] is None and info["result"] == {"ok": True}


def test_fail_after_a_delay_and_release(client: teguh.Client, queue: str) -> None:
    spawned = client.spawn_task(queue, "t", max_attempts=5)
    run_id = client._claim_runs(queue, "w1", 30, 1)[0]["run_id"]
    client._fail_run_after(queue, run_id, json.dumps({"type": "X", "message": "m"}), 3600)
    info = client._get_task_info(queue, spawned.task_id)
    assert info is not None and info["state"] == "sleeping"
    assert info["failure_reason"]["type"] == "X"
    assert client._claim_runs(queue, "w1", 30, 1) == []
    due = client._seconds_until_due(queue)
    assert due is not None and 3500 < due <= 3600

    other = client.spawn_task(queue, "t")
    run_id = client._claim_runs(queue, "w1", 30, 1)[0]["run_id"]
    client._release_run(queue, run_id)
    assert client.get_task_result(queue, other.task_id).state == "pending"
    with pytest.raises((teguh.LeaseLost, teguh.Cancelled)):
        client._release_run(queue, run_id)


def test_task_info_is_none_for_an_unknown_queue_or_task(client: teguh.Client, queue: str) -> None:
    missing = "00000000-0000-7000-8000-000000000001"
    assert client._get_task_info(queue, missing) is None
    assert client._get_task_info("no_such_queue", missing) is None
    assert client._get_task_info("Not-A-Queue", missing) is None


def test_identifier_statements_quote_like_quote_ident(client: teguh.Client) -> None:
    from teguh import _sql

    def render(cur: object) -> list[str]:
        return [
            _sql.listen("teguh_done").as_string(cur),
            _sql.unlisten('we"ird').as_string(cur),
            _sql.create_database("db").as_string(cur),
            _sql.drop_database("db").as_string(cur),
        ]

    assert client._run("render", render) == [
        'listen "teguh_done"',
        'unlisten "we""ird"',
        'create database "db"',
        'drop database if exists "db" with (force)',
    ]
