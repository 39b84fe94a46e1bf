"""The worker's row in the registry of running workers (`teguh.workers`, `Client.list_workers`).

Operators need to see which workers are alive, where they run, what they
serve and how busy they are. A worker registers at start, refreshes its row
from the heartbeat thread (one statement per beat for the whole worker, not
one per run) and deletes it at a clean stop. A worker that dies without
stopping (SIGKILL, a lost machine) stops beating: its row expires a few beats
later, is hidden from `list_workers` at once and deleted by the next beat of
any other worker.

Each beat also reports how many runs the worker completed since the previous
one (per queue), which `Client.queue_stats` sums into "completed in the last
minute and hour" without an index on the tasks' finish time. The completer
thread hands those counts over through a `queue.SimpleQueue`, so no lock is
shared between the two threads.
"""

from __future__ import annotations

import logging
import os
import queue as queue_module
import socket
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .._version import __version__
from ..errors import TeguhError, error_message

if TYPE_CHECKING:
    from ..client import Client

logger = logging.getLogger("teguh.worker")

MISSED_BEATS = 3
"""A worker's row expires this many heartbeat intervals after its last beat."""

MIN_TTL_SECONDS = 2.0
"""The shortest life of a row without a beat (short test intervals on a busy machine)."""


class Registry:
    """One worker's registration: `register()` at start, `beat()` per heartbeat, `unregister()` at stop.

    Args:
        client: the worker's client.
        worker_id: the name on the worker's leases.
        queues: the queues it serves.
        concurrency: its slots.
        app_version: the app's `version`, if any.
        interval: seconds between heartbeats (the row lives `MISSED_BEATS` of them).
        running: returns the number of runs executing now.
    """

    def __init__(
        self,
        client: Client,
        *,
        worker_id: str,
        queues: Sequence[str],
        concurrency: int,
        app_version: str | None,
        interval: float,
        running: Callable[[], int],
    ) -> None:
        self.instance_id = str(uuid.uuid4())
        self._client = client
        self._running = running
        self._ttl = max(MISSED_BEATS * interval, MIN_TTL_SECONDS)
        self._info = {
            "worker_id": worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queues": list(queues),
            "concurrency": concurrency,
            "teguh_version": __version__,
            "app_version": app_version,
        }
        self._completed: queue_module.SimpleQueue[tuple[str, int]] = queue_module.SimpleQueue()
        self._closed = False
        self._registered = False

    def completed(self, queue: str, count: int) -> None:
        """Count `count` runs of `queue` completed (the completer thread calls it after each commit)."""
        if count:
            self._completed.put((queue, count))

    def register(self) -> None:
        """Write the worker's row (the first beat)."""
        self.beat()

    def beat(self) -> None:
        """Refresh the row: running count, last seen, expiry; report completions. Never raises."""
        if self._closed:
            return
        counts: dict[str, int] = {}
        while True:
            try:
                queue, count = self._completed.get_nowait()
            except queue_module.Empty:
                break
            counts[queue] = counts.get(queue, 0) + count
        try:
            self._client._worker_heartbeat(
                self.instance_id, {**self._info, "running": self._running()}, self._ttl, counts
            )
            self._registered = True
        except Exception as exc:  # the registry is for people; it must not stop a worker
            for queue, count in counts.items():  # report them with the next beat
                self._completed.put((queue, count))
            message = error_message(exc) if isinstance(exc, TeguhError) else repr(exc)
            logger.warning("could not refresh the worker registry (%s)", message)

    def unregister(self) -> None:
        """Delete the row (a clean stop); later beats do nothing. Never raises."""
        self._closed = True
        if not self._registered:
            return
        try:
            self._client._unregister_worker(self.instance_id)
        except Exception as exc:  # the row expires on its own
            message = error_message(exc) if isinstance(exc, TeguhError) else repr(exc)
            logger.warning("could not remove this worker from the registry (%s); its row expires", message)
