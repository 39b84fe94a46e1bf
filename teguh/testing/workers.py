"""Running a real `Worker` in a thread for a test: `WorkerThread` and `worker_thread`.

A worker's `run()` blocks, so tests run it in a daemon thread and need three
things from the wrapper: to know when it listens (so a spawn is seen), to know
when it has gone quiet (so an assertion does not race the work), and to stop
and join it with a deadline. Failures of `run()` are re-raised in the test's
thread, as `TeguhError`, when the wrapper stops.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import TeguhError

if TYPE_CHECKING:
    from ..app import App
    from ..worker import Worker

WORKER_START_TIMEOUT = 15.0
"""Seconds `WorkerThread.start` waits for the worker to listen before giving up."""

WORKER_STOP_TIMEOUT = 20.0
"""Seconds `worker_thread` (and `WorkerThread.stop`) wait for the worker to stop."""

IDLE_TIMEOUT = 10.0
"""Seconds `WorkerThread.wait_idle` waits by default."""


class WorkerThread:
    """A `Worker` running in a daemon thread: start, wait until idle, stop.

    ```python
    with WorkerThread(app.worker(install_signal_handlers=False)) as running:
        task.spawn({"n": 1})
        running.wait_idle()
    ```

    Args:
        worker: the worker to run (build it with `install_signal_handlers=False`:
            signals belong to the test runner).
        name: the thread's name (default: after the worker's queue).

    Caveats: Python cannot stop a thread; a handler that never returns keeps
    the thread alive after `stop()` (which then returns False).
    """

    def __init__(self, worker: Worker, *, name: str | None = None) -> None:
        self.worker = worker
        self.error: BaseException | None = None
        """What `worker.run()` raised, if it did."""
        self.thread = threading.Thread(
            target=self._main, name=name or f"teguh-test-worker-{worker.queue}", daemon=True
        )

    def _main(self) -> None:
        try:
            self.worker.run()
        except BaseException as exc:  # reported in the test's thread (start, stop, raise_error)
            self.error = exc

    def __enter__(self) -> WorkerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        stopped = self.stop()
        if not stopped:
            raise TeguhError(f"the worker did not stop within {WORKER_STOP_TIMEOUT} s")
        self.raise_error()

    def start(self, timeout: float | None = WORKER_START_TIMEOUT) -> WorkerThread:
        """Start the thread; return once the worker listens (`worker.started`).

        Args:
            timeout: seconds to wait; None waits as long as the thread lives.

        Raises:
            TeguhError: the worker stopped before it started, or did not start in time.
        """
        self.thread.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.worker.started.wait(0.05):
            if not self.thread.is_alive():
                raise TeguhError(f"the worker stopped before it started: {self.error or '?'}") from self.error
            if deadline is not None and time.monotonic() > deadline:
                raise TeguhError(f"the worker did not start within {timeout} s")
        return self

    def wait_idle(self, timeout: float = IDLE_TIMEOUT) -> None:
        """Wait until the worker has nothing to do: no run in flight or buffered, in its idle wait.

        Waits on `Worker.idle`. From then on only a notification, a due moment,
        the poll or `stop()` ends the worker's wait, so a test can spawn and know
        the worker was not already awake.

        Raises:
            TeguhError: not idle within `timeout` seconds, or the worker thread ended.
        """
        if not self.worker.idle.wait(timeout):
            self._raise_if_dead()
            raise TeguhError(f"the worker did not go idle within {timeout} s")

    def _raise_if_dead(self) -> None:
        if not self.thread.is_alive():
            raise TeguhError(f"the worker thread ended: {self.error or 'run() returned'}") from self.error

    def stop(self, timeout: float = WORKER_STOP_TIMEOUT, *, force: bool = False) -> bool:
        """Stop the worker and join its thread; returns whether it ended in time.

        When it did not and `force` is False, stops it once more with
        `force=True` and waits 5 s more. The worker's own client is closed either way.
        """
        self.worker.stop(force=force)
        self.thread.join(timeout)
        if self.thread.is_alive() and not force:
            self.worker.stop(force=True)
            self.thread.join(5)
        self.worker.client.close()
        return not self.thread.is_alive()

    def raise_error(self) -> None:
        """Raise what `worker.run()` raised, wrapped in `TeguhError`, if it raised."""
        if self.error is not None:
            raise TeguhError(f"worker.run() raised {self.error!r}") from self.error


@contextlib.contextmanager
def worker_thread(app: App, queue: str | None = None, **options: Any) -> Iterator[Worker]:
    """Run a `Worker` of `app` in a thread for the length of the block.

    Yields once the worker listens (so a spawn inside the block is seen), and
    stops and joins it at the end. Takes the options of `App.worker`;
    `install_signal_handlers` is off (signals belong to the test runner).

    Raises:
        TeguhError: the worker did not start, did not stop in time, or `run()` raised.
    """
    options.setdefault("install_signal_handlers", False)
    running = WorkerThread(app.worker(queue, **options))
    try:
        # no start deadline here, as before: pytest-timeout ends a worker that hangs while starting
        running.start(timeout=None)
        yield running.worker
    finally:
        stopped = running.stop()
    if not stopped:
        raise TeguhError(f"the worker did not stop within {WORKER_STOP_TIMEOUT} s")
    running.raise_error()
