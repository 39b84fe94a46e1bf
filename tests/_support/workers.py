"""Running a worker in a thread for a test: `start_worker`, on the public `teguh.testing.WorkerThread`."""

from __future__ import annotations

from typing import Any

from teguh import App
from teguh.testing import WorkerThread

__all__ = ["WorkerThread", "start_worker"]


def start_worker(
    app: App, queue: str | None = None, *, timeout: float = 15.0, **options: Any
) -> WorkerThread:
    """Build a worker of `app` (options of `App.worker`), run it in a thread, return once it listens.

    Signal handlers stay off (they belong to the test runner). Stop it with
    `.stop()`, or use the result as a context manager.
    """
    options.setdefault("install_signal_handlers", False)
    return WorkerThread(app.worker(queue, **options)).start(timeout)
