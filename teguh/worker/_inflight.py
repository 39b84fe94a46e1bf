"""The runs a worker holds, and the one lock every thread of the worker shares.

A claimed run is in flight from its claim until its completion or failure is
recorded (or it is released at shutdown): its lease is heartbeated all that
time. Claimed runs wait in a prefetch buffer until a handler thread (a slot)
is free. Four kinds of thread touch this state (the claim loop, the handler
threads, the completer and the heartbeat), so it lives here, behind one
`threading.Condition`, and nowhere else; the stop flags written from signal
handlers are plain attributes, which need no lock.

This module also keeps the `idle` signal: set while the claim loop sits in a
wait with no run in flight, nothing buffered and no wake-up pending, so
nothing but the database (a notification, a due moment, the poll) can end it.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..context import RunState

logger = logging.getLogger("teguh.worker")


class Run:
    """A claimed run in this worker: its queue, its inputs, its context state and its logger."""

    __slots__ = ("began", "ctx", "flagged_at", "log", "queue", "row", "running", "started", "state")

    def __init__(self, row: dict[str, Any], queue: str) -> None:
        self.queue = queue
        """The queue the run was claimed from: every call about it names this queue."""
        self.row = row
        self.state = RunState()
        self.started = time.monotonic()
        self.running = False
        """Set when a thread starts the handler (prefetched runs are not running)."""
        self.flagged_at: float | None = None
        """When the worker first saw the run lost or cancelled while its handler ran."""
        self.began = 0.0
        """When its handler was called (`time.monotonic()`; 0 until then): durations start here."""
        self.ctx: Any = None
        """Its `TaskContext`, once built (hooks are given it)."""
        self.log = logging.LoggerAdapter(
            logger,
            {
                "queue": queue,
                "task_id": row["task_id"],
                "run_id": row["run_id"],
                "attempt": row["attempt"],
                "task_name": row["task_name"],
            },
        )

    @property
    def run_id(self) -> str:
        return self.row["run_id"]


class InFlight:
    """The claimed runs, the prefetch buffer and the busy slots of one worker.

    Args:
        queue: the worker's first queue (the runs' queue when `hold` is given none).
        concurrency: the number of slots (handler threads).
        prefetch: how many runs may wait in the buffer beyond the free slots.
        wake: ends the claim loop's current (or next) wait; called when the
            buffer runs low and when a slot frees up.
    """

    def __init__(self, queue: str, concurrency: int, prefetch: int, wake: Callable[[], None]) -> None:
        self._queue = queue
        self._concurrency = concurrency
        self._low_water = prefetch // 2
        self._wake = wake
        mutex = threading.RLock()
        self._lock = threading.Condition(mutex)
        self._ready = threading.Condition(mutex)
        """Where parked slot threads wait for runs (not `_lock`: its `notify(k)` could wake others)."""
        self._runs: dict[str, Run] = {}
        self._buffer: collections.deque[Run] = collections.deque()
        self._active = 0
        self._parked = 0
        """Slot threads waiting in `take()` for runs: free slots whose thread is already there."""
        self._grants = 0
        """Runs `hold` promised to parked threads it woke (those slots already count in `_active`)."""
        self._closed = False
        self._quiet_wait = False
        self.processed = 0
        """Runs that ended here (completed, failed, suspended or cancelled)."""
        self.idle = threading.Event()
        """Set while the claim loop waits with nothing in flight and no wake-up pending."""

    # -- the claim loop's side ---------------------------------------------

    @property
    def buffered(self) -> int:
        """Runs claimed but not started yet."""
        return len(self._buffer)

    def hold(self, rows: list[dict[str, Any]], queue: str | None = None) -> None:
        """Register runs claimed from `queue` (default: the first) and buffer them.

        Their leases are heartbeated from now on.
        """
        queue = queue or self._queue
        with self._lock:
            for row in rows:
                run = Run(row, queue)
                self._runs[run.run_id] = run
                self._buffer.append(run)
            # a parked thread takes the new runs first (see `take`)
            self._wake_parked()

    def reserve_slots(self) -> tuple[int, int]:
        """Take a free slot without a thread for each buffered run no woken thread will take.

        Returns (slots taken, slots still free); parked threads are free
        slots. The caller starts one `take()` loop per slot taken.
        """
        with self._lock:
            n = min(
                self._concurrency - self._active - self._parked,
                max(0, len(self._buffer) - self._grants),
            )
            self._active += n
            return n, self._concurrency - self._active

    def quiet(self) -> bool:
        """Whether no slot is busy and nothing is buffered (runs may still await their completion).

        Only the claim loop fills the buffer and takes slots, so for the claim
        loop a True answer stays true until it claims again.
        """
        with self._lock:
            return not self._active and not self._buffer

    def enter_wait(self) -> None:
        """The claim loop is about to wait while `quiet()`, with no wake-up pending.

        Sets `idle` now if no run is in flight, or when the completer records the
        last one (which wakes nobody).
        """
        with self._lock:
            self._quiet_wait = True
            self._update_idle()

    def leave_wait(self) -> None:
        """The claim loop's wait ended."""
        with self._lock:
            self._quiet_wait = False
            self.idle.clear()

    def _update_idle(self) -> None:
        # caller holds the lock
        if self._quiet_wait and not self._runs and not self._active and not self._buffer:
            self.idle.set()

    # -- the handler threads' side -----------------------------------------

    def take(self) -> Run | None:
        """The next buffered run for a slot's thread; None once closed (the thread then ends).

        Taking the next run here, rather than going back through the claim
        loop and the executor for each one, keeps a fast queue's per-task cost
        to a deque pop. With the buffer empty the thread gives its slot back
        and parks here until `hold` has a run for it: a fast queue, whose
        threads empty the buffer between two claims, would otherwise start a
        thread (a `ThreadPoolExecutor.submit`) for almost every run. Parked
        threads are woken one at a time, each by the previous one once it has
        taken its run and more are buffered (`_wake_parked`). The claim loop is
        woken when the buffer runs low (to claim more) and when the slot frees
        up.
        """
        with self._lock:
            while not self._buffer or self._closed:
                self._free_slot()
                if self._closed:
                    return None
                self._parked += 1
                while not self._grants and not self._closed:
                    self._ready.wait()
                if not self._grants:  # closed while parked
                    self._parked -= 1
                    return None
                # `hold` moved a parked thread's slot to `_active` for a run;
                # any parked thread may take it (the buffer is checked again:
                # a busy thread may have taken that run first)
                self._grants -= 1
            run = self._buffer.popleft()
            low = len(self._buffer) == self._low_water
            if self._parked and self._buffer and not self._grants:
                self._wake_parked()
        if low:
            self._wake()
        run.running = True
        return run

    def _wake_parked(self) -> None:
        # Caller holds the lock. Wake one parked thread for the buffered runs,
        # unless one is waking already: the thread that wakes wakes the next
        # when runs are still left after it took its own. Waking every parked
        # thread at once costs a thread switch per run on a fast queue, where
        # a running thread takes most runs before a woken one gets the GIL.
        if self._parked and self._buffer and not self._grants:
            self._parked -= 1
            self._active += 1
            self._grants += 1
            self._ready.notify()

    def _free_slot(self) -> None:
        # Caller holds the lock. Wake before freeing the slot: whoever sees the
        # slot free also finds the wake-up pending (see `enter_wait`).
        self._wake()
        self._active -= 1
        self._lock.notify_all()

    def finish(self, runs: Iterable[Run]) -> None:
        """Runs whose outcome is recorded (or given up on) leave the worker."""
        with self._lock:
            for run in runs:
                self._runs.pop(run.run_id, None)
                self.processed += 1
            self._update_idle()
            self._lock.notify_all()

    # -- the heartbeat's side ----------------------------------------------

    def lease_states(self, queue: str | None = None) -> dict[str, RunState]:
        """`{run_id: RunState}` of the runs of `queue` (default: all) whose lease is worth extending."""
        # a lost or cancelled run has no lease left to extend
        with self._lock:
            return {
                run_id: run.state
                for run_id, run in self._runs.items()
                if not (run.state.lost or run.state.cancelled) and (queue is None or run.queue == queue)
            }

    def stuck(self, grace: float) -> list[Run]:
        """Runs whose handler kept running for `grace` seconds after the run was lost or cancelled."""
        with self._lock:
            return self._stuck(grace)

    def _stuck(self, grace: float) -> list[Run]:
        # Caller holds the lock. The grace (one claim timeout) lets a handler
        # that is between two teguh calls notice the signal and unwind.
        now = time.monotonic()
        stuck = []
        for run in self._runs.values():
            if not run.running or run.state.completing or not (run.state.lost or run.state.cancelled):
                continue
            if run.flagged_at is None:
                run.flagged_at = now
            elif now - run.flagged_at >= grace:
                stuck.append(run)
        return stuck

    # -- shutdown -----------------------------------------------------------

    def close(self) -> None:
        """Stop handing buffered runs to threads (safe from a signal handler: no lock)."""
        self._closed = True

    def take_unstarted(self) -> list[Run]:
        """Empty the buffer: its runs leave the worker without having started."""
        with self._lock:
            unstarted = list(self._buffer)
            self._buffer.clear()
            for run in unstarted:
                self._runs.pop(run.run_id, None)
            self._ready.notify_all()  # parked threads see `close()` and end
        return unstarted

    def wait_for_handlers(self, timeout: float, grace: float, forced: Callable[[], bool]) -> None:
        """Wait up to `timeout` seconds for busy slots to free up, or until `forced()`.

        Stuck handlers (see `stuck`) will not finish: only the others are waited for.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._active > len(self._stuck(grace)) and not forced():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(min(left, 0.5))

    def runs(self) -> list[Run]:
        """The runs in flight now."""
        with self._lock:
            return list(self._runs.values())

    @property
    def active(self) -> int:
        """Busy slots: handler threads running or about to take a run."""
        with self._lock:
            return self._active
