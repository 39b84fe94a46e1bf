"""`teguh topic`: bind, list, publish and unbind from the command line."""

from __future__ import annotations

import json

from click.testing import CliRunner

from teguh.cli import main


def test_topic_commands(dsn: str) -> None:
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(main, ["--dsn", dsn, *args])

    assert run("queue", "create", "audit").exit_code == 0
    bound = run("topic", "bind", "orders.*", "audit-order", "-q", "audit")
    assert bound.exit_code == 0, bound.output
    assert "orders.* -> audit-order on queue audit" in bound.stdout
    listed = json.loads(run("topic", "list").stdout)
    assert [(b["pattern"], b["task_name"], b["queue"]) for b in listed] == [
        ("orders.*", "audit-order", "audit")
    ]

    published = run("topic", "publish", "orders.created", '{"order": 7}', "--idempotency-key", "o7")
    assert published.exit_code == 0, published.output
    (spawned,) = json.loads(published.stdout)
    assert spawned["created"] is True
    again = json.loads(
        run("topic", "publish", "orders.created", '{"order": 7}', "--idempotency-key", "o7").stdout
    )
    assert again[0]["task_id"] == spawned["task_id"] and again[0]["created"] is False

    bad = run("topic", "bind", "orders..x", "t", "-q", "audit")
    assert bad.exit_code == 1 and "empty word" in bad.stderr

    assert run("topic", "unbind", "orders.*", "audit-order", "-q", "audit").exit_code == 0
    missing = run("topic", "unbind", "orders.*", "audit-order", "-q", "audit")
    assert missing.exit_code == 1 and "no binding" in missing.stderr
    assert json.loads(run("topic", "list").stdout) == []
