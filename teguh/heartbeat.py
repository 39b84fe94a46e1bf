"""The worker's heartbeat: one statement per tick extends every lease it holds.

Per-run heartbeats would cost one round trip per run per tick; `extend_claims`
extends them all at once and reports, per run, whether the task was cancelled
or taken over, which the heartbeat passes on to the run's context.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from .errors import TeguhError, error_message

if TYPE_CHECKING:
    from .client import Client
    from .context import RunState

logger = logging.getLogger("teguh.heartbeat")


class Heartbeat(threading.Thread):
    """Extends the leases of the runs `runs()` returns, every `interval` seconds.

    Args:
        client: the worker's client.
        queue: the queue of the runs.
        extend_by: the new lease length in seconds (the claim timeout).
        interval: seconds between ticks.
        runs: returns the current `{run_id: RunState}` of in-flight runs.
        on_tick: called after every tick (the worker counts stuck handlers).
    """

    def __init__(
        self,
        client: Client,
        queue: str,
        extend_by: int,
        interval: float,
        runs: Callable[[], dict[str, RunState]],
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(name=f"teguh-heartbeat-{queue}", daemon=True)
        self._client = client
        self._queue = queue
        self._extend_by = extend_by
        self._interval = interval
        self._runs = runs
        self._on_tick = on_tick
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
        runs = self._runs()
        if not runs:
            return
        try:
            outcomes = self._client.extend_claims(self._queue, list(runs), self._extend_by)
        except TeguhError as exc:
            logger.warning("heartbeat failed (%s); leases not extended this tick", error_message(exc))
            return
        except Exception:  # a heartbeat must never die
            logger.exception("heartbeat failed unexpectedly")
            return
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
        self.ticks += 1
        self.beat.set()
