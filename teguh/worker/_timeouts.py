"""Per-attempt timeouts (`@app.task(..., timeout=seconds)`): interrupt the handler, then give up on it.

Python cannot kill a thread. At a run's deadline this module raises
`teguh.TimeoutExceeded` into the handler's thread asynchronously
(`PyThreadState_SetAsyncExc`): the exception surfaces at the next Python
bytecode the thread runs, so it interrupts Python code (a loop, a pure-Python
call) but not a blocking C call (`time.sleep`, a socket read, a C
extension's loop), which sees it only when it returns. The handler thread
then fails the attempt with reason `$Timeout`.

A handler still running `TIMEOUT_GRACE_SECONDS` after its deadline (blocked
in C, or catching `BaseException`) is given up on: the attempt is failed
here with `$Timeout` (retried per the task's policy), the run is marked lost
so whatever the handler does later is refused or dropped, and its slot counts
toward the worker's `max_stuck_runs` like any stuck handler.

Only runs of tasks with a timeout are watched: a worker whose handlers have
none never starts the thread. The thread exits when nothing is left to watch.

How it fails: the asynchronous exception can surface anywhere in Python code
the handler thread runs before the handler returns, including inside a
teguh call the handler made or a `finally` block; the exception is never
raised into the thread after its handler returned (`Guard.finish` clears a
pending one under the guard's lock).
"""

from __future__ import annotations

import ctypes
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import TimeoutExceeded

logger = logging.getLogger("teguh.worker")

TIMEOUT_GRACE_SECONDS = 5.0
"""How long a handler may unwind after `TimeoutExceeded` before the worker fails the attempt itself."""

_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc


def _raise_in(thread_id: int, exc_type: Any) -> None:
    """Schedule `exc_type` in thread `thread_id` (None clears a pending one)."""
    # no argtypes: a bare None goes down as NULL (clear), not as Py_None
    _set_async_exc(ctypes.c_ulong(thread_id), None if exc_type is None else ctypes.py_object(exc_type))


class Guard:
    """One watched handler call: its thread, its deadline and who ends it.

    The handler thread calls `finish()` when the call returns or raises (it
    may call it twice: it is idempotent). The deadline thread calls `fire()`
    at the deadline and `abandon()` after the grace; both act only while the
    call is still running, under `_lock`, so the exception never reaches the
    thread once `finish()` has run.
    """

    __slots__ = ("_lock", "abandoned", "done", "fired", "run", "seconds", "thread_id")

    def __init__(self, run: Any, seconds: float, thread_id: int) -> None:
        self.run = run
        self.seconds = seconds
        self.thread_id = thread_id
        self.done = False
        self.fired = False
        self.abandoned = False
        self._lock = threading.Lock()

    def finish(self) -> bool:
        """The handler call ended; returns True when the worker gave up on it (its outcome is dropped)."""
        self.done = True  # first, unlocked: fire() and abandon() check it under the lock
        if self._lock.acquire(timeout=1.0):  # waits for a fire() in progress
            try:
                if self.fired:
                    _raise_in(self.thread_id, None)  # not raised yet: never raise it into worker code
            finally:
                self._lock.release()
        return self.abandoned

    def fire(self) -> bool:
        """At the deadline: raise `TimeoutExceeded` into the handler's thread if the call still runs."""
        with self._lock:
            if self.done:
                return False
            self.fired = True
            _raise_in(self.thread_id, TimeoutExceeded)
            return True

    def abandon(self) -> bool:
        """After the grace: give up on a call still running; returns True when it did."""
        with self._lock:
            if self.done:
                return False
            self.abandoned = True
            return True


class Deadlines:
    """Watches the handler calls that have a timeout, from one thread started on demand.

    Args:
        on_abandon: called (in a thread of its own) with the run and the
            timeout of a handler still running `TIMEOUT_GRACE_SECONDS` after
            its deadline; it records the timeout.
    """

    def __init__(self, on_abandon: Callable[[Any, float], None]) -> None:
        self._on_abandon = on_abandon
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, int, Guard]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, run: Any, seconds: float) -> Guard:
        """Start watching the calling thread's handler call for `run`, due in `seconds`."""
        guard = Guard(run, seconds, threading.get_ident())
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + seconds, next(self._seq), 1, guard))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="teguh-timeouts", daemon=True)
                self._thread.start()
            self._cond.notify()
        return guard

    def _loop(self) -> None:
        with self._cond:
            while True:
                if not self._heap:
                    self._thread = None
                    return
                due, _, phase, guard = self._heap[0]
                wait = due - time.monotonic()
                if wait > 0 and not guard.done:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                if guard.done:
                    continue
                if phase == 1:
                    if guard.fire():
                        guard.run.log.warning(
                            "timed out after %g s: TimeoutExceeded raised into the handler", guard.seconds
                        )
                        heapq.heappush(
                            self._heap, (due + TIMEOUT_GRACE_SECONDS, next(self._seq), 2, guard)
                        )
                elif guard.abandon():
                    threading.Thread(
                        target=self._on_abandon,
                        args=(guard.run, guard.seconds),
                        name="teguh-timeout-fail",
                        daemon=True,
                    ).start()
