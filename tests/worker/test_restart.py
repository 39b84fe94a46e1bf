"""A PostgreSQL restart under a running worker: it reconnects on its own.

This test runs its own PostgreSQL (the session's server is shared by every
test and must not go down), restarts it with `pg_ctl restart -m fast` while a
worker idles on it, and checks that tasks spawned afterwards are processed
promptly.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

import teguh

from .conftest import WorkerThread, eventually


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_worker_keeps_processing_after_a_postgres_restart(own_server: Any) -> None:
    dsn = own_server.get_uri()
    teguh.install(dsn)
    app = teguh.App(dsn, queue="jobs")
    ran = threading.Event()
    done: list[Any] = []

    @app.task("ping")
    def ping(params: Any) -> Any:
        done.append(params)
        ran.set()
        return params

    handle = WorkerThread(app.worker(poll_interval=30, install_signal_handlers=False)).start()
    try:
        first = app.spawn_task("ping", 1)
        assert ran.wait(10), "the worker did not process a task before the restart"
        old_listener = handle.worker.listener_pid
        own_server.restart()
        ran.clear()
        # the first calls after a restart may fail; the spawn itself is not retried
        result = eventually(lambda: _try_spawn(app, 2), timeout=20)
        assert ran.wait(15), "the worker did not process a task after the restart"
        assert done == [1, 2]
        eventually(lambda: handle.worker.listener_pid not in (None, old_listener), timeout=15)
        final = app.client.wait_for_result("jobs", result.task_id, timeout=10)
        assert final.state == "completed"
        assert app.client.get_task_result("jobs", first.task_id).state == "completed"
    finally:
        assert handle.stop(), "the worker did not stop"
        app.client.close()


def _try_spawn(app: teguh.App, params: Any) -> Any:
    try:
        return app.spawn_task("ping", params)
    except teguh.ConnectionLost:
        return None
