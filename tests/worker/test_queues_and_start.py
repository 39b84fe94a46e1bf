"""Which queue a worker serves and what its start line says (issue 11, items 5 and 6).

A worker creates its queue only when the app declares it (the app's queue, its
tasks' queues) or it is told to (`create_queue=True`, `--create-queue`): a typo
in `--queue` fails at start in one line listing the queues that exist, instead
of serving a new empty queue. Its INFO start line names the queue and the
database (host, port, name; never a password), so a worker serving the wrong
database shows it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import teguh
from teguh import _dsn
from teguh.app import App
from teguh.worker._worker import missing_queue_message, start_line

from .conftest import Q, WorkerThread, eventually

PASSWORD = "hunter2-not-for-logs"


def _queues(dsn: str) -> list[str]:
    with teguh.Client(dsn) as client:
        return client.list_queues()


def _mail_app(dsn: str | None = None) -> App:
    app = App(dsn, queue=Q)
    app.task("send", queue="mail")(lambda params: None)
    app.task("plain")(lambda params: None)
    return app


def test_declared_queues_are_the_apps_and_its_tasks(dsn: str) -> None:
    assert _mail_app(dsn).declared_queues() == ["jobs", "mail"]
    assert App(dsn, queue="solo").declared_queues() == ["solo"]


def test_a_worker_refuses_an_undeclared_missing_queue_and_lists_those_that_exist(dsn: str) -> None:
    app = _mail_app(dsn)
    app.client.create_queue("jobs")
    app.client.create_queue("mail")
    worker = app.worker("opz", install_signal_handlers=False)
    with pytest.raises(teguh.QueueNotFound) as raised:
        worker.run()
    assert str(raised.value) == (
        "queue 'opz' does not exist (queues: jobs, mail); "
        "create it with 'teguh queue create opz' or pass --create-queue"
    )
    assert raised.value.queue == "opz"
    assert _queues(dsn) == ["jobs", "mail"]  # nothing created
    assert not worker.started.is_set()


def test_a_worker_creates_a_declared_queue_and_an_existing_one_needs_no_declaration(dsn: str) -> None:
    app = _mail_app(dsn)
    for queue in ("jobs", "mail"):  # the app's own, then a task's
        with WorkerThread(app.worker(queue, install_signal_handlers=False)):
            pass
    assert _queues(dsn) == ["jobs", "mail"]
    app.client.create_queue("made_by_hand")
    with WorkerThread(app.worker("made_by_hand", install_signal_handlers=False)):
        pass


def test_create_queue_creates_an_undeclared_queue(dsn: str) -> None:
    app = _mail_app(dsn)
    with WorkerThread(app.worker("opz", create_queue=True, install_signal_handlers=False)) as running:
        assert running.worker.create_queue is True
    assert _queues(dsn) == ["opz"]


def test_no_queue_anywhere_says_none(dsn: str) -> None:
    assert missing_queue_message("opz", []).startswith("queue 'opz' does not exist (queues: none); ")


def test_the_start_line_names_queue_and_database_but_not_the_password(
    dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    # the test server trusts its socket, so it ignores the password
    info = _dsn.parse(dsn)
    app = App(f"{dsn} password={PASSWORD}", queue=Q)
    caplog.set_level(logging.INFO, logger="teguh.worker")
    with WorkerThread(app.worker(worker_id="w-test-1", concurrency=3, install_signal_handlers=False)):
        pass
    app.client.close()
    lines = [r.getMessage() for r in caplog.records if "serving queue" in r.getMessage()]
    assert lines == [
        f"worker w-test-1 serving queue 'jobs' on db {info['dbname']} at {info['host']}:{info['port']} "
        "(concurrency 3)"
    ]
    assert not [r for r in caplog.records if PASSWORD in r.getMessage()]


def test_the_start_line_formats_host_port_and_name() -> None:
    line = start_line("w-host-1234", "jobs", "postgresql://u:pw@db.internal:6432/shop", 16)
    assert line == "worker w-host-1234 serving queue 'jobs' on db shop at db.internal:6432 (concurrency 16)"
    assert "pw" not in line.replace("w-host", "")
    assert start_line("w", "q", "host=/tmp dbname=teguh password=x", 1) == (
        "worker w serving queue 'q' on db teguh at /tmp:5432 (concurrency 1)"
    )


# -- the command line ----------------------------------------------------------------


def _write_app(tmp_path: Path) -> None:
    (tmp_path / "queueapp.py").write_text(
        "import teguh\n\napp = teguh.App(queue='jobs')\napp.task('send', queue='mail')(lambda p: None)\n",
        encoding="utf-8",
    )


def _cli(tmp_path: Path, dsn: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "teguh", "--dsn", dsn, "worker", "--app", "queueapp:app", *args]


def test_the_cli_worker_refuses_a_typo_in_one_line(dsn: str, tmp_path: Path) -> None:
    _write_app(tmp_path)
    with teguh.Client(dsn) as client:
        client.create_queue("jobs")
    done = subprocess.run(
        _cli(tmp_path, dsn, "--queue", "opz"), cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        "teguh: error: queue 'opz' does not exist (queues: jobs); "
        "create it with 'teguh queue create opz' or pass --create-queue"
    ]
    assert _queues(dsn) == ["jobs"]


@pytest.mark.parametrize("how", ["flag", "env"])
def test_the_cli_worker_creates_the_queue_with_create_queue(dsn: str, tmp_path: Path, how: str) -> None:
    _write_app(tmp_path)
    args, env = (["--create-queue"], {}) if how == "flag" else ([], {"TEGUH_CREATE_QUEUE": "1"})
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            _cli(tmp_path, dsn, "--queue", "opz", *args),
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )
    try:
        eventually(lambda: "serving queue 'opz'" in log.read_text() or proc.poll() is not None, 30)
        assert proc.poll() is None, log.read_text()
        assert _queues(dsn) == ["opz"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_framework_worker_commands_take_create_queue() -> None:
    pytest.importorskip("flask")
    from teguh.contrib.flask import teguh_cli

    assert "create_queue" in [p.name for p in teguh_cli.commands["worker"].params]


def test_the_cli_passes_create_queue_to_the_worker(monkeypatch: Any, dsn: str) -> None:
    from click.testing import CliRunner

    from teguh import cli

    seen: dict[str, Any] = {}

    def fake_run_worker(app: Any, queue: Any, log_level: str, log_format: str, **options: Any) -> None:
        seen.update(options, queue=queue)

    monkeypatch.setattr(cli, "run_worker", fake_run_worker)
    monkeypatch.setattr(cli, "load_app", lambda spec: _mail_app())
    args = ["--dsn", dsn, "worker", "--app", "x:app"]
    result = CliRunner().invoke(cli.main, [*args, "-q", "opz", "--create-queue"])
    assert result.exit_code == 0, result.output
    assert seen["create_queue"] is True and seen["queue"] == ("opz",)  # --queue may repeat (issue 12)
    assert CliRunner().invoke(cli.main, args).exit_code == 0
    assert seen["create_queue"] is False
