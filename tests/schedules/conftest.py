"""Fixtures for the schedule tests: an app on the test's database with queue `Q`, workers in threads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _support.apps import queue_app
from _support.polling import eventually  # noqa: F401 (the schedule tests import it from here)
from _support.workers import worker_threads

from teguh import App
from teguh.testing import WorkerThread

Q = "sched"


@pytest.fixture
def app(dsn: str) -> Iterator[App]:
    """An app on the test's database whose queue `Q` exists, with a `tick` handler."""
    with queue_app(dsn, Q) as application:

        @application.task("tick")
        def tick(params: Any) -> Any:
            return params

        yield application


@pytest.fixture
def start_worker(app: App) -> Iterator[Callable[..., WorkerThread]]:
    """Start workers of `app` (or another app) in threads; stopped and joined at teardown."""
    with worker_threads(app, poll_interval=30, shutdown_timeout=5) as threads:
        yield threads.start


def tasks_of(app: App, name: str, queue: str = Q) -> list[dict[str, Any]]:
    """The tasks a schedule spawned, by scheduled_for (read with plain SQL, so nothing is faked)."""
    with app.client.transaction() as conn, conn.cursor() as cur:
        cur.execute(
            f"select task_id::text, headers, idempotency_key, state, available_at from teguh.t_{queue} "
            "where headers->>'schedule' = %s order by headers->>'scheduled_for', task_id",
            (name,),
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
