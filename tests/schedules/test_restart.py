"""Exactly one task per tick across a PostgreSQL restart (the server of the test's own)."""

from __future__ import annotations

from typing import Any

import psycopg2
import pytest

import teguh
from teguh.testing import WorkerThread

from .conftest import Q, eventually, tasks_of
from .test_worker import one_per_tick


@pytest.mark.slow
@pytest.mark.chaos
@pytest.mark.timeout(120)
def test_one_task_per_tick_across_a_postgres_restart(own_server: Any) -> None:
    dsn = own_server.get_uri()
    teguh.install(dsn)
    app = teguh.App(dsn, queue=Q)
    app.task("tick")(lambda params: params)
    app.schedule("beat", "tick", every=1, catch_up="all")
    app.client.create_queue(Q)
    handles = [
        WorkerThread(app.worker(poll_interval=30, install_signal_handlers=False)).start() for _ in range(2)
    ]

    def fired() -> int:
        try:
            return len(tasks_of(app, "beat"))
        except (teguh.TeguhError, psycopg2.Error):
            return 0  # the server is coming back

    try:
        eventually(lambda: fired() >= 3, timeout=20, what="3 ticks before the restart")
        own_server.restart()
        before = fired()
        eventually(lambda: fired() >= before + 3, timeout=40, what="3 ticks after the restart")
    finally:
        for handle in handles:
            assert handle.stop(), "a worker did not stop"
    try:
        one_per_tick(app, "beat")
    finally:
        app.client.close()
