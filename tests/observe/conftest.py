"""Fixtures of the observability tests: an app on the test's database and workers in threads.

The mechanics live in tests/_support (apps, workers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from _support.apps import queue_app
from _support.workers import worker_threads

from teguh.app import App
from teguh.testing import WorkerThread

Q = "obs"


@pytest.fixture
def app(dsn: str) -> Iterator[App]:
    """An `App` on the test's database whose queue is `Q` (created)."""
    with queue_app(dsn, Q) as application:
        yield application


@pytest.fixture
def start_worker(app: App) -> Iterator[Callable[..., WorkerThread]]:
    """`start_worker(**options)`: a worker of `app` in a thread, stopped and joined at teardown."""
    with worker_threads(app, poll_interval=30, shutdown_timeout=10) as threads:
        yield threads.start
