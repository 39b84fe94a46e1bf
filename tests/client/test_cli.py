"""The minimal CLI: install, queue create|drop|list, and its error handling."""

from __future__ import annotations

import json

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


@pytest.mark.parametrize(
    "bad",
    ["{", "NaN", '{"a": NaN}', "[Infinity]", "[-Infinity]", "1e999", "{'a': 1}", ""],
)
def test_every_invalid_json_exits_2_in_one_line(runner: CliRunner, bad: str) -> None:
    # No database needed: the argument is refused before any connection.
    for args, what in (
        (["spawn", "jobs", "t", bad], "PARAMS"),
        (["emit", "jobs", "ev", bad], "PAYLOAD"),
        (["spawn", "jobs", "t", "{}", "--headers", bad], "--headers"),
        (["spawn", "jobs", "t", "{}", "--retry-strategy", bad], "--retry-strategy"),
    ):
        result = runner.invoke(main, ["--dsn", "host=/nonexistent dbname=x", *args])
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith(f"teguh: error: {what} is not valid JSON"), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_params_and_payload_from_a_file_or_stdin(runner: CliRunner, dsn: str, tmp_path) -> None:
    base = ["--dsn", dsn]
    assert runner.invoke(main, [*base, "queue", "create", "jobs"]).exit_code == 0
    big = {"blob": "x" * 300_000}  # past the shell's argument limit
    params_file = tmp_path / "params.json"
    params_file.write_text(json.dumps(big), encoding="utf-8")
    from_file = runner.invoke(main, [*base, "spawn", "jobs", "t", f"@{params_file}"])
    assert from_file.exit_code == 0, from_file.output
    from_stdin = runner.invoke(main, [*base, "spawn", "jobs", "t", "-"], input='{"via": "stdin"}')
    assert from_stdin.exit_code == 0, from_stdin.output
    emitted = runner.invoke(main, [*base, "emit", "jobs", "ev", "-"], input='{"ok": true}')
    assert emitted.exit_code == 0, emitted.output
    with teguh.Client(dsn) as client:
        runs = client.claim_task("jobs", "w", qty=2)
        assert [r.params for r in runs] == [big, {"via": "stdin"}]
    missing = runner.invoke(main, [*base, "spawn", "jobs", "t", f"@{tmp_path / 'nope.json'}"])
    assert missing.exit_code == 2
    assert missing.stderr.startswith("teguh: error: PARAMS: cannot read")
    assert len(missing.stderr.strip().splitlines()) == 1


def test_dropping_an_unknown_queue_is_an_error(runner: CliRunner, dsn: str) -> None:
    assert runner.invoke(main, ["--dsn", dsn, "queue", "create", "jobs"]).exit_code == 0
    typo = runner.invoke(main, ["--dsn", dsn, "queue", "drop", "jbos"])
    assert typo.exit_code == 1
    assert typo.stderr.strip() == "teguh: error: no queue 'jbos' to drop (queues: jobs)"
    assert "dropped" not in typo.stdout
    with teguh.Client(dsn) as client:
        assert client.list_queues() == ["jobs"]


def _app_module(tmp_path, monkeypatch, name: str, source: str) -> None:
    (tmp_path / f"{name}.py").write_text(source, encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # load_app imports from the current directory


@pytest.mark.parametrize(
    ("source", "line", "error"),
    [
        ("import teguh\n\napp = teguh.App(queue=undefined_name)\n", 3, "NameError: name 'undefined_name'"),
        ("import teguh\n\ndef broken(:\n    pass\n", 3, "SyntaxError: "),
        ("import os\nimport no_such_dependency_xyz\n", 2, "ModuleNotFoundError: No module named"),
        ("import teguh\n\napp = teguh.App(queue='Bad-Name')\n", 3, "InvalidQueueName: invalid queue name"),
    ],
    ids=["name-error", "syntax-error", "missing-dependency", "raised-inside-teguh"],
)
def test_an_app_that_fails_to_import_shows_the_users_line(
    runner: CliRunner, tmp_path, monkeypatch, source: str, line: int, error: str
) -> None:
    name = f"opsapp_{abs(hash(source)) % 10**8}"
    _app_module(tmp_path, monkeypatch, name, source)
    result = runner.invoke(main, ["--dsn", "host=/nonexistent dbname=x", "worker", "--app", f"{name}:app"])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    expected = f"teguh: error: cannot import '{name}': {name}.py, line {line}: {error}"
    assert lines[0].startswith(expected), lines
    assert "--debug" in lines[0]


def test_debug_shows_the_app_import_traceback(runner: CliRunner, tmp_path, monkeypatch) -> None:
    _app_module(tmp_path, monkeypatch, "opsapp_debug", "x = 1\nraise RuntimeError('boom at import')\n")
    args = ["--dsn", "host=/nonexistent", "--debug", "worker", "--app", "opsapp_debug:app"]
    result = runner.invoke(main, args)
    assert result.exit_code == 1
    assert isinstance(result.exception.__cause__, RuntimeError)


def test_an_app_module_that_does_not_exist_is_a_usage_error(runner: CliRunner, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(main, ["--dsn", "host=/nonexistent", "worker", "--app", "no_such_opsapp:app"])
    assert result.exit_code == 2
    assert "cannot import 'no_such_opsapp'" in result.stderr


def test_emit_says_when_the_event_was_already_emitted(runner: CliRunner, dsn: str) -> None:
    base = ["--dsn", dsn]
    assert runner.invoke(main, [*base, "queue", "create", "jobs"]).exit_code == 0
    first = runner.invoke(main, [*base, "emit", "jobs", "approved:ada", '{"by": "grace"}'])
    assert first.exit_code == 0 and first.stdout.strip() == "event approved:ada emitted"
    with teguh.Client(dsn) as client:
        emitted_at = client.emit_event("jobs", "approved:ada", {"by": "grace"}).emitted_at
    same = runner.invoke(main, [*base, "emit", "jobs", "approved:ada", '{"by": "grace"}'])
    assert same.exit_code == 0, same.output
    assert same.stdout.strip() == f"event approved:ada already emitted at {emitted_at}; payload unchanged"
    other = runner.invoke(main, [*base, "emit", "jobs", "approved:ada", '{"by": "linus"}'])
    assert other.exit_code == 0, other.output
    assert other.stdout.strip() == (
        f"event approved:ada already emitted at {emitted_at}; payload differs, kept the first"
    )


def test_task_show_says_what_a_task_waits_for(runner: CliRunner, dsn: str) -> None:
    from _support.polling import eventually
    from _support.workers import start_worker

    app = teguh.App(dsn, queue="jobs")

    @app.task("nap")
    def nap(params: object, ctx: teguh.TaskContext) -> None:
        ctx.sleep_for("nap", 3600)

    @app.task("approval")
    def approval(params: dict, ctx: teguh.TaskContext) -> None:
        ctx.await_event(f"approved:{ctx.task_id}", step="approval", timeout=params["timeout"])

    def show(task_id: str) -> dict:
        shown = runner.invoke(main, ["--dsn", dsn, "task", "show", "jobs", task_id])
        assert shown.exit_code == 0, shown.output
        return json.loads(shown.stdout)

    try:
        app.client.create_queue("jobs")
        napping = app.spawn_task("nap").task_id
        timed = app.spawn_task("approval", {"timeout": 600}).task_id
        forever = app.spawn_task("approval", {"timeout": None}).task_id
        worker = start_worker(app, poll_interval=5, shutdown_timeout=5)
        try:
            for task_id in (napping, timed, forever):
                eventually(lambda t=task_id: app.client.get_task_result("jobs", t).state == "sleeping", 15)
        finally:
            assert worker.stop(), "the worker did not stop"
        worker.raise_error()
        now = app.client.database_time()

        slept = show(napping)
        assert slept["state"] == "sleeping" and slept["awaited_event"] is None and slept["wait_step"] == "nap"
        assert slept["waiting_for"] == f"sleep 'nap' until {slept['wake_at']}"
        wake_at = app.client._get_task_info("jobs", napping)["wake_at"]
        assert str(wake_at) == slept["wake_at"]
        assert 3500 < (wake_at - now).total_seconds() <= 3600

        waiting = show(timed)
        timeout_at = app.client._get_task_info("jobs", timed)["wake_at"]
        assert 500 < (timeout_at - now).total_seconds() <= 600
        expected = f"event 'approved:{timed}' in step 'approval' (times out at {timeout_at})"
        assert waiting["waiting_for"] == expected
        assert (waiting["awaited_event"], waiting["wake_at"]) == (f"approved:{timed}", str(timeout_at))

        unbounded = show(forever)
        assert unbounded["waiting_for"] == f"event 'approved:{forever}' in step 'approval' (no timeout)"
        assert unbounded["wake_at"] is None

        delayed = app.spawn_task("nap", available_at=app.client.database_time(60)).task_id
        assert show(delayed)["waiting_for"].startswith("start at ")
        assert show(delayed)["state"] == "pending"
    finally:
        app.client.close()
