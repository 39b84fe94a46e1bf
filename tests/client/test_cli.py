"""The minimal CLI: install, queue create|drop|list, and its error handling."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import teguh
from teguh.cli import main


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_install_and_queues(runner: CliRunner, empty_dsn: str) -> None:
    result = runner.invoke(main, ["--dsn", empty_dsn, "install"])
    assert result.exit_code == 0, result.output
    assert "0.1.0" in result.stdout
    assert runner.invoke(main, ["--dsn", empty_dsn, "install"]).exit_code == 0  # idempotent
    assert runner.invoke(main, ["--dsn", empty_dsn, "queue", "create", "jobs"]).exit_code == 0
    assert runner.invoke(main, ["--dsn", empty_dsn, "queue", "create", "mail"]).exit_code == 0
    listed = runner.invoke(main, ["--dsn", empty_dsn, "queue", "list"])
    assert listed.exit_code == 0 and listed.stdout.split() == ["jobs", "mail"]
    assert runner.invoke(main, ["--dsn", empty_dsn, "queue", "drop", "mail"]).exit_code == 0
    with teguh.Client(empty_dsn) as client:
        assert client.list_queues() == ["jobs"]


def test_dsn_from_the_environment(runner: CliRunner, dsn: str) -> None:
    result = runner.invoke(main, ["queue", "create", "jobs"], env={"TEGUH_DSN": dsn})
    assert result.exit_code == 0, result.output
    with teguh.Client(dsn) as client:
        assert client.list_queues() == ["jobs"]


def test_errors_are_one_line_with_exit_status_1(runner: CliRunner, dsn: str, empty_dsn: str) -> None:
    bad = runner.invoke(main, ["--dsn", dsn, "queue", "create", "Bad-Name"])
    assert bad.exit_code == 1
    assert bad.stderr.startswith("teguh: error: invalid queue name")
    assert len(bad.stderr.strip().splitlines()) == 1
    assert "Traceback" not in bad.stderr
    missing = runner.invoke(main, ["--dsn", empty_dsn, "queue", "list"])
    assert missing.exit_code == 1 and "teguh install" in missing.stderr


def test_debug_shows_the_exception(runner: CliRunner, dsn: str) -> None:
    result = runner.invoke(main, ["--dsn", dsn, "--debug", "queue", "create", "Bad"])
    assert result.exit_code == 1
    assert isinstance(result.exception, teguh.InvalidQueueName)


def test_usage_errors_exit_with_status_2(runner: CliRunner) -> None:
    assert runner.invoke(main, ["queue", "create"]).exit_code == 2
    assert runner.invoke(main, ["no-such-command"]).exit_code == 2
    assert "install" in runner.invoke(main, ["--help"]).stdout


def test_spawn_delay_cleanup_and_task_commands(runner: CliRunner, dsn: str) -> None:
    base = ["--dsn", dsn]
    assert runner.invoke(main, [*base, "queue", "create", "jobs"]).exit_code == 0
    delayed = runner.invoke(main, [*base, "spawn", "jobs", "later", '{"a": 1}', "--delay", "3600"])
    assert delayed.exit_code == 0, delayed.output
    task_id = delayed.stdout.strip()
    with teguh.Client(dsn) as client:
        # delayed: no dispatch row, so nothing to claim now
        assert client.claim_task("jobs", "w") == []
        assert client.next_due("jobs") is not None
    shown = runner.invoke(main, [*base, "task", "show", "jobs", task_id])
    assert shown.exit_code == 0 and '"state": "pending"' in shown.stdout
    cancelled = runner.invoke(main, [*base, "task", "cancel", "jobs", task_id])
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.stdout
    cleaned = runner.invoke(main, [*base, "cleanup", "--queue", "jobs", "--ttl", "0"])
    assert cleaned.exit_code == 0, cleaned.output
    assert cleaned.stdout.strip() == "jobs: 1 task(s) deleted"
    gone = runner.invoke(main, [*base, "task", "show", "jobs", task_id])
    assert gone.exit_code == 1 and "not found" in gone.stderr
