"""The public ways to rebind an app (configure, set_dsn, use_client, eager mode) and WorkerThread.

Integrations (the CLI, Flask, teguh.testing) used to write `App`'s private
fields; these tests pin the methods that replaced those writes.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from _support.polling import eventually

import teguh
from teguh.testing import WorkerThread, eager

NOWHERE = "host=/nonexistent dbname=never"


def test_configure_replaces_the_dsn_and_closes_the_previous_client(dsn: str) -> None:
    app = teguh.App(NOWHERE)
    assert app.configure(None) is False
    assert app.configure(NOWHERE) is False  # the same DSN: nothing changes
    first = teguh.Client(dsn)
    app = teguh.App(client=first)
    assert app.configure(dsn) is True
    with pytest.raises(teguh.TeguhError):
        first.list_queues()  # closed: its pool must not keep serving the old database
    assert app.client is not first and app.client.dsn == dsn
    app.client.close()


def test_configure_without_replace_is_only_a_default(dsn: str) -> None:
    written = teguh.App(NOWHERE)
    assert written.configure(dsn, replace=False) is False  # a DSN written in the app wins
    given = teguh.App(client=teguh.Client(NOWHERE))
    assert given.configure(dsn, replace=False) is False
    bare = teguh.App()
    assert bare.configure(dsn, replace=False) is True
    assert bare.client.dsn == dsn
    bare.client.close()


def test_set_dsn_takes_none_as_the_default_resolution(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEGUH_DSN", dsn)
    app = teguh.App(NOWHERE)
    first = app.client
    assert app.set_dsn(NOWHERE) is False and app.client is first  # the same DSN: nothing changes
    assert app.set_dsn(None) is True and app.dsn is None
    with pytest.raises(teguh.TeguhError):
        first.list_queues()  # closed: its pool must not keep serving the old database
    assert app.client.dsn == dsn  # resolved from the environment
    assert app.set_dsn("") is False  # "" is None here too
    assert app.set_dsn(NOWHERE) is True and app.dsn == NOWHERE


def test_use_client_restores_the_previous_client_and_dsn(dsn: str) -> None:
    app = teguh.App(NOWHERE)
    before = app.client
    inner = teguh.Client(dsn)
    with app.use_client(inner, dsn=dsn) as bound:
        assert bound is inner and app.client is inner
        assert app.configure(dsn) is False  # the block's DSN is the app's DSN
    assert app.client is before
    inner.list_queues()  # close=False leaves the block's client open
    with app.use_client(inner, dsn=dsn, close=True):
        pass
    with pytest.raises(teguh.TeguhError):
        inner.list_queues()


def test_eager_runner_is_public_and_undone_on_exit() -> None:
    app = teguh.App(NOWHERE, queue="jobs")

    @app.task("noop")
    def noop(params: Any) -> str:
        return "ok"

    assert app.eager_runner is None
    assert app.get_task("noop") is noop and app.get_task("missing") is None
    with eager(app) as runner:
        assert app.eager_runner is runner
        with pytest.raises(teguh.TeguhError, match="already in eager mode"):
            eager(app).start()
        assert runner.result(noop.spawn().task_id).result == "ok"
    assert app.eager_runner is None
    assert "spawn_task" not in vars(app)


def test_worker_thread_waits_until_idle_and_reports_errors(dsn: str) -> None:
    app = teguh.App(dsn, queue="jobs")
    app.client.create_queue("jobs")
    done: list[int] = []

    @app.task("count")
    def count(params: Any) -> None:
        done.append(params)

    try:
        with WorkerThread(app.worker(install_signal_handlers=False, poll_interval=5)) as running:
            for n in range(3):
                count.spawn(n)
            eventually(lambda: len(done) == 3)
            running.wait_idle(timeout=10)
            assert running.worker.processed == 3
    finally:
        app.client.close()


def test_worker_thread_start_fails_when_run_raises() -> None:
    class Broken:
        queue = "jobs"
        started = threading.Event()
        client = teguh.Client(NOWHERE)

        def run(self) -> None:
            raise RuntimeError("cannot start")

    running = WorkerThread(Broken())  # type: ignore[arg-type]
    with pytest.raises(teguh.TeguhError, match="stopped before it started"):
        running.start(timeout=5)
    with pytest.raises(teguh.TeguhError, match="cannot start"):
        running.raise_error()
