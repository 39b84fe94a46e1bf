"""Fixtures for the schedule tests: an app on the test's database with queue `Q`, workers in threads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _support.polling import eventually  # noqa: F401 (the schedule tests import it from here)

from teguh import App
from teguh.testing import WorkerThread

Q = "sched"


@pytest.fixture
def app(dsn: str) -> Iterator[App]:
    """An app on the test's database whose queue `Q` exists, with a `tick` handler."""
    application = App(dsn, queue=Q)
    application.client.create_queue(Q)

    @application.task("tick")
    def tick(params: Any) -> Any:
        return params

    try:
        yield application
    finally:
        application.client.close()


@pytest.fixture
def start_worker(app: App) -> Iterator[Callable[..., WorkerThread]]:
    """Start workers of `app` (or another app) in threads; stopped and joined at teardown."""
    running: list[WorkerThread] = []

    def start(the_app: App | None = None, **options: Any) -> WorkerThread:
        options.setdefault("poll_interval", 30)
        options.setdefault("shutdown_timeout", 5)
        options.setdefault("install_signal_handlers", False)
        handle = WorkerThread((the_app or app).worker(**options))
        running.append(handle)
        return handle.start()

    yield start
    for handle in running:
        if not handle.stop():
            handle.stop(5, force=True)
        handle.worker.client.close()
        assert handle.error is None, handle.error


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
