"""Running workers in threads for a test: `start_worker`, and `worker_threads` for fixtures.

Both build on the public `teguh.testing.WorkerThread`. Signal handlers stay off
(they belong to the test runner).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from teguh import App
from teguh.testing import WorkerThread

__all__ = ["WorkerThread", "WorkerThreads", "start_worker", "worker_threads"]


def start_worker(
    app: App, queue: str | None = None, *, timeout: float = 15.0, **options: Any
) -> WorkerThread:
    """Build a worker of `app` (options of `App.worker`), run it in a thread, return once it listens.

    Signal handlers stay off (they belong to the test runner). Stop it with
    `.stop()`, or use the result as a context manager.
    """
    options.setdefault("install_signal_handlers", False)
    return WorkerThread(app.worker(queue, **options)).start(timeout)


class WorkerThreads:
    """The workers one test runs in threads, with its folder's default options.

    `start(the_app=None, **options)` starts a worker of `the_app` (default: the
    fixture's app) and returns once it listens; `queue=` picks its queue, the
    other options are `App.worker`'s, over `defaults`. `stop_all()` stops them
    and says what went wrong.
    """

    def __init__(self, app: App | None, **defaults: Any) -> None:
        self.app = app
        self.defaults = {"install_signal_handlers": False, **defaults}
        self.running: list[WorkerThread] = []

    def start(self, the_app: App | None = None, **options: Any) -> WorkerThread:
        options = {**self.defaults, **options}
        queue = options.pop("queue", None)
        app = the_app or self.app
        assert app is not None, "no app to start a worker of"
        handle = WorkerThread(app.worker(queue, **options))
        self.running.append(handle)
        return handle.start()

    def stop_all(self) -> list[str]:
        """Stop and join every worker (forced when one does not end); the problems, if any."""
        problems = []
        for handle in self.running:
            if not handle.stop():
                handle.stop(5, force=True)
                problems.append(f"worker {handle.worker.worker_id} did not stop in time")
            handle.worker.client.close()
            if handle.error is not None:
                problems.append(f"worker.run() raised {handle.error!r}")
        return problems


@contextlib.contextmanager
def worker_threads(app: App | None, **defaults: Any) -> Iterator[WorkerThreads]:
    """`WorkerThreads` for the length of the block (a fixture's yield).

    At its end every worker is stopped; a worker that did not stop in time or
    whose `run()` raised fails the test.
    """
    threads = WorkerThreads(app, **defaults)
    try:
        yield threads
    finally:
        problems = threads.stop_all()
    assert not problems, problems
