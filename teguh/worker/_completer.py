"""The completer thread: commits finished runs in batches, one statement for all runs waiting.

A handler thread that committed its own completion would pay one round trip
per run; handing the result to this thread lets a busy worker commit hundreds
of completions in one `complete_runs` call while the handler thread takes its
next run. `complete_runs` takes one queue: a worker serving several queues
commits one statement per queue present in the batch.

How it fails: a batch that cannot be committed (the database stays
unreachable for `COMPLETION_RETRY_SECONDS`, a trigger refuses it) is logged
and dropped; those runs' leases expire and their tasks run again. Should the
thread itself end by an unexpected error, it calls `on_death` (the worker
stops), since a worker that cannot complete would otherwise keep
heartbeating leases it will never give back.
"""

from __future__ import annotations

import logging
import queue as queue_module
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import _faults
from ..errors import error_message
from ._execute import retrying
from ._observe import RunEvents

if TYPE_CHECKING:
    from ..client import Client
    from ._inflight import InFlight, Run

logger = logging.getLogger("teguh.worker")

MAX_BATCH = 1000
"""The most completions committed by one statement."""


class Completer(threading.Thread):
    """Commits the results handed to `submit()` in batches, until `close()`.

    Args:
        client: the worker's client.
        queue: the worker's (first) queue; each run is completed on its own queue.
        inflight: the worker's runs; a run leaves it once its outcome is known.
        on_death: called if the thread ends by an unexpected error.
        on_completed: called with a queue and how many of its runs a commit completed
            (the worker registry counts them).
        events: logs each completed run and calls the lifecycle hooks (default: logs only).
    """

    def __init__(
        self,
        client: Client,
        queue: str,
        inflight: InFlight,
        on_death: Callable[[], None],
        on_completed: Callable[[str, int], None] | None = None,
        events: RunEvents | None = None,
    ) -> None:
        super().__init__(name=f"teguh-completer-{queue}", daemon=True)
        self._client = client
        self._queue = queue
        self._inflight = inflight
        self._on_death = on_death
        self._on_completed = on_completed
        self._events = events or RunEvents(None)
        # a SimpleQueue (in C): a put costs a fraction of a `queue.Queue` put, whose
        # Python-level Condition is taken and notified for every run
        self._completions: queue_module.SimpleQueue[tuple[Run, str] | None] = queue_module.SimpleQueue()

    def submit(self, run: Run, text: str) -> None:
        """Queue `run`'s completion with its result encoded as JSON `text` (any thread)."""
        self._completions.put((run, text))

    def close(self, timeout: float) -> None:
        """Commit what is queued, then end the thread; waits up to `timeout` seconds."""
        if self.is_alive():
            self._completions.put(None)
            self.join(timeout=timeout)

    def run(self) -> None:
        try:
            self._complete_batches()
        except BaseException:
            logger.critical("the completion thread failed; stopping the worker", exc_info=True)
            self._on_death()

    def _complete_batches(self) -> None:
        done = False
        while not done:
            item = self._completions.get()
            batch: list[tuple[Run, str]] = []
            if item is None:
                done = True
            else:
                batch.append(item)
            while len(batch) < MAX_BATCH:
                try:
                    item = self._completions.get_nowait()
                except queue_module.Empty:
                    break
                if item is None:
                    done = True
                    continue
                batch.append(item)
            if batch:
                self.flush(batch)

    def flush(self, batch: list[tuple[Run, str]]) -> None:
        """Commit one batch, one statement per queue, and log each run's outcome.

        Never raises for a database error. Tests replace this method
        (`monkeypatch.setattr(Completer, "flush", ...)`) to simulate a bug that
        kills the thread.
        """
        queue = batch[0][0].queue
        if any(run.queue != queue for run, _ in batch):
            by_queue: dict[str, list[tuple[Run, str]]] = {}
            for item in batch:
                by_queue.setdefault(item[0].queue, []).append(item)
            for part in by_queue.values():
                self._flush_queue(part[0][0].queue, part)
        else:
            self._flush_queue(queue, batch)

    def _flush_queue(self, queue: str, batch: list[tuple[Run, str]]) -> None:
        """Commit the completions of `batch`, all runs of `queue`, in one statement."""
        run_ids = [run.run_id for run, _ in batch]
        results = [text for _, text in batch]

        try:
            outcomes = retrying(lambda: self._client._complete_runs(queue, run_ids, results))
        except Exception as exc:  # the completer must outlive any error
            logger.error(
                "could not record %d completions (%s); their leases will expire and the tasks run again",
                len(batch),
                error_message(exc),
                extra={"queue": queue},
            )
            outcomes = {}
        if outcomes and self._on_completed is not None:
            self._on_completed(queue, sum(1 for outcome in outcomes.values() if outcome == "ok"))
        if outcomes and _faults.ARMED is not None:
            _faults.hit("after_complete_commit")
        for run, _ in batch:
            outcome = outcomes.get(run.run_id)
            if outcome == "ok":
                self._events.succeeded(run)
            elif outcome == "cancelled":
                run.log.info("finished, but its task had been cancelled")
                self._events.cancelled(run)
            elif outcome == "lost":
                run.log.warning("finished after losing its lease; its result was discarded")
        self._inflight.finish(run for run, _ in batch)
