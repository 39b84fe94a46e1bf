"""The worker's heartbeat: one statement per tick and queue extends every lease it holds.

Per-run heartbeats would cost one round trip per run per tick; `extend_claims`
extends all the runs of one queue at once (a worker serving several queues
sends one statement per queue that has runs in flight) and reports, per run, whether the task was cancelled
or taken over, which the heartbeat passes on to the run's context.

After each tick the stuck-run policy counts handlers that kept running after
their run was lost or cancelled. Python cannot stop a thread, so past
`max_stuck_runs` of them the worker stops with `EXIT_STUCK` and lets its
supervisor restart the process. A failed tick is logged and skipped (the
leases survive a missed tick: the interval is at most a third of the lease).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..errors import TeguhError, error_message

if TYPE_CHECKING:
    from ..client import Client
    from ..context import RunState
    from ._inflight import InFlight
    from ._registry import Registry

logger = logging.getLogger("teguh.heartbeat")
worker_logger = logging.getLogger("teguh.worker")

EXIT_STUCK = 3
"""`Worker.exit_code` (and the CLI's exit status) after a stop forced by stuck handlers."""


class Heartbeat(threading.Thread):
    """Extends the leases of the runs `runs()` returns, every `interval` seconds.

    Args:
        client: the worker's client.
        queue: the queue of the runs, or the worker's queues (a sequence).
        extend_by: the new lease length in seconds (the claim timeout).
        interval: seconds between ticks.
        runs: returns the current `{run_id: RunState}` of in-flight runs; with
            several queues it is called with each queue (`runs(queue)`) and
            returns that queue's runs.
        on_tick: called after every tick (the worker counts stuck handlers).
        registry: the worker's registry row, refreshed once per tick.
    """

    def __init__(
        self,
        client: Client,
        queue: str | Sequence[str],
        extend_by: int,
        interval: float,
        runs: Callable[..., dict[str, RunState]],
        on_tick: Callable[[], None] | None = None,
        registry: Registry | None = None,
    ) -> None:
        self._queues = (queue,) if isinstance(queue, str) else tuple(queue)
        super().__init__(name=f"teguh-heartbeat-{self._queues[0]}", daemon=True)
        self._client = client
        self._queue = self._queues[0]
        self._extend_by = extend_by
        self._interval = interval
        self._runs = runs
        self._on_tick = on_tick
        self._registry = registry
        self._stop_event = threading.Event()
        self.ticks = 0
        self.beat = threading.Event()
        """Set after every tick that reached the database (tests wait on it)."""

    def stop(self) -> None:
        """End the thread after its current tick."""
        self._stop_event.set()

    def run(self) -> None:
        while not self._stop_event.wait(self._interval):
            self.tick()
            if self._on_tick is not None:
                try:
                    self._on_tick()
                except Exception:  # a heartbeat must never die
                    logger.exception("heartbeat callback failed")

    def tick(self) -> None:
        """Extend every in-flight lease now and flag cancelled or lost runs."""
        if len(self._queues) == 1:
            beat = self._extend(self._queue, self._runs())
        else:
            # one statement per queue (extend_claims takes one queue); a failed
            # queue does not keep the others' leases from being extended
            beat = any([self._extend(queue, self._runs(queue)) for queue in self._queues])
        if beat:
            self.ticks += 1
            self.beat.set()
        if self._registry is not None:
            self._registry.beat()

    def _extend(self, queue: str, runs: dict[str, RunState]) -> bool | None:
        """Extend the leases of `runs`, all of `queue`; True when it reached the database, None if no runs."""
        if not runs:
            return None
        try:
            outcomes = self._client.extend_claims(queue, list(runs), self._extend_by)
        except TeguhError as exc:
            logger.warning(
                "heartbeat failed (%s); leases not extended this tick",
                error_message(exc),
                extra={"queue": queue},
            )
            return False
        except Exception:  # a heartbeat must never die
            logger.exception("heartbeat failed unexpectedly")
            return False
        for run_id, outcome in outcomes.items():
            state = runs.get(run_id)
            # a run whose completion is committing loses its lease row on purpose
            if state is None or outcome == "ok" or state.completing:
                continue
            if outcome == "cancelled":
                if not state.cancelled:
                    logger.info("run %s: its task was cancelled", run_id, extra={"run_id": run_id})
                state.cancelled = True
            else:
                if not state.lost:
                    logger.warning(
                        "run %s no longer holds its task (lease lost)", run_id, extra={"run_id": run_id}
                    )
                state.lost = True
        return True


class StuckPolicy:
    """Counts stuck handlers and says when there are too many (the worker then stops).

    A handler is stuck when it still runs `grace` seconds (one claim timeout,
    at least 1 s) after its run was lost or cancelled: its writes are refused,
    yet it holds a slot. Those slots do not come back, so past
    `max_stuck_runs` (0: never) the worker stops with `EXIT_STUCK`.

    Args:
        inflight: the worker's runs.
        queue: the worker's queue (for log records).
        concurrency: the worker's slots (for the log message).
        claim_timeout: the lease length in seconds (the grace).
        max_stuck_runs: how many stuck handlers make the worker stop; 0 never.
    """

    def __init__(
        self, inflight: InFlight, queue: str, concurrency: int, claim_timeout: int, max_stuck_runs: int
    ) -> None:
        self._inflight = inflight
        self._queue = queue
        self._concurrency = concurrency
        self.grace = max(claim_timeout, 1)
        self._max = max_stuck_runs

    def count(self) -> int:
        """Handlers still running well after their run was lost or cancelled."""
        return len(self._inflight.stuck(self.grace))

    def over_limit(self, stopping: bool) -> bool:
        """Whether the worker must stop now; logs why when it must (never while already `stopping`)."""
        stuck = self._inflight.stuck(self.grace)
        if not self._max or len(stuck) < self._max or stopping:
            return False
        for run in stuck:
            run.log.error("handler still running %.0f s after its run ended", time.monotonic() - run.started)
        worker_logger.error(
            "%d of %d slots are held by stuck handlers (max_stuck_runs %d); stopping the worker "
            "so that its supervisor restarts it (Python cannot stop a thread)",
            len(stuck),
            self._concurrency,
            self._max,
            extra={"queue": self._queue},
        )
        return True
