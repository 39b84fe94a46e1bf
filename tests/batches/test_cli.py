"""`teguh batch show ID`: counts, state and the first failures, as JSON."""

from __future__ import annotations

import json

from click.testing import CliRunner

from teguh.app import App
from teguh.cli import main as cli

from .batch_app import Q


def test_batch_show_prints_counts_state_and_first_failures(app: App, dsn: str) -> None:
    batch = app.client.spawn_batch(Q, "item", [1, 2, 3], max_attempts=1)
    runs = app.client.claim_task(Q, "w", qty=3)
    app.client.complete_run(Q, runs[0].run_id, {"ok": 1})
    app.client._fail_run_non_retryable(Q, runs[1].run_id, '{"message": "broken"}')
    result = CliRunner().invoke(cli, ["--dsn", dsn, "batch", "show", batch.id])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert {k: shown[k] for k in ("total", "pending", "running", "completed", "failed", "cancelled")} == {
        "total": 3, "pending": 0, "running": 1, "completed": 1, "failed": 1, "cancelled": 0,
    }
    assert (shown["state"], shown["on_failure"], shown["finished_at"]) == ("running", "continue", None)
    (failure,) = shown["first_failures"]
    assert failure["task_id"] == runs[1].task_id
    assert failure["failure"]["message"] == "broken"


def test_batch_show_of_an_unknown_batch_is_one_line_and_status_1(app: App, dsn: str) -> None:
    result = CliRunner().invoke(cli, ["--dsn", dsn, "batch", "show", "00000000-0000-0000-0000-000000000000"])
    assert result.exit_code == 1
    assert "batch 00000000-0000-0000-0000-000000000000 not found" in result.stderr


def test_batch_list_prints_the_newest_batches(app: App, dsn: str) -> None:
    older = app.client.spawn_batch(Q, "item", [1])
    newer = app.client.spawn_batch(Q, "item", [1, 2])
    result = CliRunner().invoke(cli, ["--dsn", dsn, "batch", "list", Q, "--limit", "5"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [(b["batch_id"], b["total"], b["state"]) for b in listed] == [
        (newer.id, 2, "running"), (older.id, 1, "running"),
    ]
