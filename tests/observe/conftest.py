"""Fixtures of the observability tests: an app on the test's database and workers in threads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from teguh.app import App
from teguh.testing import WorkerThread

Q = "obs"


@pytest.fixture
def app(dsn: str) -> Iterator[App]:
    """An `App` on the test's database whose queue is `Q` (created)."""
    application = App(dsn, queue=Q)
    application.client.create_queue(Q)
    try:
        yield application
    finally:
        application.client.close()


@pytest.fixture
def start_worker(app: App) -> Iterator[Callable[..., WorkerThread]]:
    """`start_worker(**options)`: a worker of `app` in a thread, stopped and joined at teardown."""
    running: list[WorkerThread] = []

    def start(**options: Any) -> WorkerThread:
        options.setdefault("poll_interval", 30)
        options.setdefault("shutdown_timeout", 10)
        options.setdefault("install_signal_handlers", False)
        handle = WorkerThread(app.worker(**options))
        running.append(handle)
        return handle.start()

    yield start
    for handle in running:
        if not handle.stop():
            handle.stop(5, force=True)
        handle.worker.client.close()
        assert handle.error is None, handle.error
