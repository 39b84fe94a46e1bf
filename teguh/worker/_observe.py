"""What the worker tells about each run: its start and end log lines, and the lifecycle hooks.

The executor (starts, failures, cancellations) and the completer (successes,
once committed) report here, so every way a run ends produces one INFO line
with its duration and outcome and one hook call. Hooks (`App.on`, and the
worker's metrics) are tuples: a worker without any pays a truth test per event.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from .._hooks import Hooks, call

if TYPE_CHECKING:
    from ._inflight import Run


def _details(run: Run, **more: Any) -> dict[str, Any]:
    details = dict(run.log.extra)  # queue, task_id, run_id, attempt, task_name
    details.update(more)
    return details


def queue_wait(run: Run) -> float | None:
    """Seconds from the moment the task became claimable to its handler's start.

    The claim measures up to itself on the database's clock (`queue_wait`);
    the time the run then spent in the worker's buffer is added on the
    worker's monotonic clock. None when the claim did not say (an older schema).
    """
    waited = run.row.get("queue_wait")
    if waited is None:
        return None
    return max(0.0, waited) + max(0.0, run.began - run.started)


def _duration(run: Run) -> float:
    return time.monotonic() - run.began if run.began else 0.0


class RunEvents:
    """Logs and hooks of the runs of one worker."""

    def __init__(self, hooks: Hooks | None) -> None:
        hooks = hooks or Hooks()
        self._started = hooks.task_started
        self._succeeded = hooks.task_succeeded
        self._retrying = hooks.task_retrying
        self._failed = hooks.task_failed
        self._cancelled = hooks.task_cancelled

    def started(self, run: Run) -> None:
        """The handler is about to be called.

        Logs a takeover (the previous attempt's lease expired: its worker died
        or hung) as a warning; the claim tells it (`lease_expired`).
        """
        run.began = time.monotonic()
        run.log.info("started")
        expired = run.row.get("lease_expired")
        if expired:
            run.log.warning(
                "taking over: the lease of attempt %s, held by %s, expired at %s",
                expired.get("attempt"),
                expired.get("worker_id"),
                expired.get("claim_expired_at"),
            )
        if self._started:
            call(self._started, "task_started", run.ctx, _details(run, queue_wait=queue_wait(run)))

    def succeeded(self, run: Run) -> None:
        """The run's completion committed."""
        duration = _duration(run)
        run.log.info("completed in %.3f s", duration)
        if self._succeeded:
            call(self._succeeded, "task_succeeded", run.ctx, _details(run, duration=duration))

    def retrying(self, run: Run, failure: dict[str, Any], delay: float | None, at: datetime | None) -> None:
        """The attempt's failure committed and the task will run again."""
        duration = _duration(run)
        run.log.info("ended in %.3f s: failed, to be retried", duration)
        if self._retrying:
            if at is None and delay is not None:
                at = datetime.now(timezone.utc) + timedelta(seconds=delay)
            call(
                self._retrying,
                "task_retrying",
                run.ctx,
                _details(run, duration=duration, failure=failure, retry_at=at),
            )

    def failed(self, run: Run, failure: dict[str, Any]) -> None:
        """The failure committed and the task failed for good."""
        duration = _duration(run)
        run.log.info("ended in %.3f s: failed for good", duration)
        if self._failed:
            call(self._failed, "task_failed", run.ctx, _details(run, duration=duration, failure=failure))

    def cancelled(self, run: Run) -> None:
        """The run ended because its task was cancelled."""
        duration = _duration(run)
        run.log.info("ended in %.3f s: cancelled", duration)
        if self._cancelled:
            call(self._cancelled, "task_cancelled", run.ctx, _details(run, duration=duration))
