"""`teguh task list`, `teguh task show`, `teguh stats`, `teguh workers`: tables and --json."""

from __future__ import annotations

import json

import pytest
from _support.workers import start_worker
from click.testing import CliRunner

import teguh
from teguh.cli import main

from .conftest import Q, claim_one


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _run(runner: CliRunner, dsn: str, *args: str) -> str:
    result = runner.invoke(main, ["--dsn", dsn, *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_task_list_table_json_and_paging(runner: CliRunner, client: teguh.Client, dsn: str) -> None:
    failed = client.spawn_task(Q, "mail", {"to": "<script>"}, max_attempts=1).task_id
    client.fail_run(
        Q, claim_one(client).run_id, {"type": "SMTPError", "message": "relay\ndenied " + "x" * 200}
    )
    pending = client.spawn_task(Q, "report", None).task_id

    lines = _run(runner, dsn, "task", "list", Q).splitlines()
    assert lines[0].split() == [
        "TASK",
        "ID",
        "NAME",
        "STATE",
        "ATTEMPTS",
        "ENQUEUED",
        "FINISHED",
        "LAST",
        "FAILURE",
    ]
    assert [line.split()[0] for line in lines[1:]] == [pending, failed]
    failed_line = lines[2]
    assert "SMTPError: relay denied xxx" in failed_line and failed_line.endswith("...")

    rows = json.loads(_run(runner, dsn, "task", "list", Q, "--state", "failed", "--json"))
    assert [(r["task_id"], r["state"], r["params"]) for r in rows] == [(failed, "failed", {"to": "<script>"})]
    assert _run(runner, dsn, "task", "list", Q, "--limit", "1", "--after", pending).split()[9] == failed
    assert _run(runner, dsn, "task", "list", Q, "--task-name", "nothing").strip() == "no tasks"


def test_task_list_refuses_bad_options(runner: CliRunner, client: teguh.Client, dsn: str) -> None:
    bad_state = runner.invoke(main, ["--dsn", dsn, "task", "list", Q, "--state", "done"])
    assert bad_state.exit_code == 2 and "done" in bad_state.stderr
    bad_after = runner.invoke(main, ["--dsn", dsn, "task", "list", Q, "--after", "x"])
    assert bad_after.exit_code == 1 and "after" in bad_after.stderr
    unknown = runner.invoke(main, ["--dsn", dsn, "task", "list", "nope"])
    assert unknown.exit_code == 1 and "nope" in unknown.stderr


def test_task_show_has_the_attempt_history_and_steps(
    runner: CliRunner, client: teguh.Client, dsn: str
) -> None:
    task_id = client.spawn_task(
        Q, "mail", {"to": "ada"}, max_attempts=2, retry_strategy={"kind": "none"}
    ).task_id
    run = claim_one(client, "w-a")
    client.set_checkpoint(Q, task_id, "render", "<p>hi</p>", run.run_id)
    client.fail_run(Q, run.run_id, {"type": "E", "message": "one"})
    client.fail_run(Q, claim_one(client, "w-b").run_id, {"type": "E", "message": "two"})
    shown = json.loads(_run(runner, dsn, "task", "show", Q, task_id))
    assert (shown["state"], shown["failure"], shown["waiting_for"]) == (
        "failed",
        {"type": "E", "message": "two"},
        None,
    )
    assert (shown["task_name"], shown["params"], shown["max_attempts"]) == ("mail", {"to": "ada"}, 2)
    assert [(a["attempt"], a["worker_id"], a["final"]) for a in shown["attempt_history"]] == [
        (1, "w-a", False),
        (2, "w-b", True),
    ]
    assert [(s["name"], s["value"]) for s in shown["steps"]] == [("render", "<p>hi</p>")]


def test_stats_one_queue_and_all(runner: CliRunner, client: teguh.Client, dsn: str) -> None:
    client.create_queue("other")
    client.spawn_task(Q, "a", None)
    lines = _run(runner, dsn, "stats").splitlines()
    assert lines[0].split()[:4] == ["QUEUE", "PENDING", "RUNNING", "SLEEPING"]
    assert [line.split()[:2] for line in lines[1:]] == [[Q, "1"], ["other", "0"]]
    one = json.loads(_run(runner, dsn, "stats", Q, "--json"))
    assert (one["queue"], one["pending"], one["estimated"]) == (Q, 1, False)
    every = json.loads(_run(runner, dsn, "stats", "--json"))
    assert [s["queue"] for s in every] == [Q, "other"]
    missing = runner.invoke(main, ["--dsn", dsn, "stats", "nope"])
    assert missing.exit_code == 1


def test_workers(runner: CliRunner, app: teguh.App, dsn: str) -> None:
    assert _run(runner, dsn, "workers").strip() == "no live workers"
    worker = start_worker(app, worker_id="cli-w", claim_timeout=3, concurrency=2)
    try:
        lines = _run(runner, dsn, "workers").splitlines()
        assert lines[0].split()[:4] == ["WORKER", "HOST", "PID", "QUEUES"]
        assert lines[1].split()[0] == "cli-w" and f" {Q} " in lines[1] and " 0/2 " in lines[1]
        (row,) = json.loads(_run(runner, dsn, "workers", "--json"))
        assert (row["worker_id"], row["queues"], row["app_version"]) == ("cli-w", [Q], "7.1")
    finally:
        assert worker.stop()
