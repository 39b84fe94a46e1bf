"""`teguh schedule list|pause|resume|trigger|delete`."""

from __future__ import annotations

import json

from click.testing import CliRunner

from teguh import App
from teguh.cli import main

from .conftest import Q, tasks_of


def test_schedule_commands(app: App, dsn: str) -> None:
    runner = CliRunner()
    app.client.create_schedule("nightly", "tick", cron="0 3 * * *", timezone="Europe/Berlin", queue=Q)

    def run(*args: str) -> str:
        result = runner.invoke(main, ["--dsn", dsn, "schedule", *args])
        assert result.exit_code == 0, result.output
        return result.stdout

    (listed,) = json.loads(run("list"))
    assert listed["name"] == "nightly" and listed["spec"] == "0 3 * * *" and listed["paused"] is False
    assert listed["timezone"] == "Europe/Berlin" and listed["queue"] == Q
    assert run("pause", "nightly").strip() == "schedule nightly paused"
    assert json.loads(run("list"))[0]["paused"] is True
    assert run("resume", "nightly").strip() == "schedule nightly resumed"
    assert json.loads(run("list"))[0]["paused"] is False
    task_id = run("trigger", "nightly").strip()
    assert [t["task_id"] for t in tasks_of(app, "nightly")] == [task_id]
    assert run("delete", "nightly").strip() == "schedule nightly deleted"
    assert json.loads(run("list")) == []
    missing = runner.invoke(main, ["--dsn", dsn, "schedule", "pause", "nightly"])
    assert missing.exit_code == 1
    assert "no schedule named 'nightly'" in missing.output
