"""Executing one claimed run: the handler call, then its completion queued or its failure recorded.

A handler thread (a slot) takes buffered runs one after another. For each it
builds the `TaskContext`, calls the handler through the app (with its
`around_run` hooks) and then either hands the encoded result to the completer
(which commits completions in batches) or records a failure at once, with the
retry delay measured on the database's clock.

How it fails: nothing a handler does may kill its thread. A control-flow
signal (`Suspended`, `Cancelled`, `LeaseLost`) ends the run without an
outcome. The handler steers what a failure does: `Snooze` puts the task back
without using an attempt, `RetryAfter` fails the attempt and sets the next
one's time, `NonRetryable` (or an exception listed in the task's
`non_retryable`) fails the task for good, and `TimeoutExceeded` (raised into
the handler at its `timeout`, see `_timeouts`) fails the attempt as
`$Timeout`. Any other exception, an unstorable result or undecodable inputs
fail the run per the task's retry policy. A failure that cannot be recorded
(the database stays unreachable for `COMPLETION_RETRY_SECONDS`, the lease is
gone) is logged: the lease then expires and the task runs again.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import _backoff, _faults, _json, _taskvars, _tracing
from ..context import TaskContext
from ..errors import (
    Cancelled,
    ConnectionLost,
    LeaseLost,
    NonRetryable,
    RetryAfter,
    Snooze,
    Suspended,
    TeguhError,
    TimeoutExceeded,
    error_message,
)
from ._failures import MAX_FAILURE_MESSAGE_CHARS, clean_text, reason_of, safe_str
from ._observe import RunEvents
from ._timeouts import Deadlines, Guard

if TYPE_CHECKING:
    from ..client import Client
    from ._inflight import InFlight, Run
    from ._protocols import CompletionSink, WorkerApp

COMPLETION_RETRY_SECONDS = 60.0
"""How long a completion or failure is retried while the database is unreachable."""

COMPLETION_BACKOFF = _backoff.Backoff(0.1, 5.0, jitter=0.2)
"""Waits between those retries: 0.2 s doubling up to 5 s, plus up to 0.2 s of jitter."""

UNKNOWN_TASK_RETRY_SECONDS = 60.0
"""Delay before a task with no handler here is offered again (another deploy may know it)."""

DEFAULT_BACKOFF_BASE = 1.0
DEFAULT_BACKOFF_MAX = 300.0
"""A task spawned without a retry strategy is retried after 1 s, 2 s, 4 s ... up to 5 min.

Without it, a handler that always fails would be retried in a hot loop. An
explicit `NoRetry()` strategy still retries at once.
"""

DEFAULT_BACKOFF = _backoff.Backoff(DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_MAX)

TRANSIENT_SQLSTATES = frozenset({"40P01", "40001"})
"""Deadlock and serialization failure: the transaction was rolled back and may be repeated."""


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionLost):
        return True
    cause = exc.__cause__ if isinstance(exc, TeguhError) else exc
    return getattr(cause, "pgcode", None) in TRANSIENT_SQLSTATES


def retrying(call: Any) -> Any:
    """Repeat `call` while the database is unreachable or reports a transient error.

    Safe for completions and failures: if an earlier try did commit, the
    repeat finds no lease and raises `LeaseLost`, which callers accept. A
    deadlock or serialization failure rolled the try back, so it is repeated.
    """
    return _backoff.retry(
        call, backoff=COMPLETION_BACKOFF, retry_if=_transient, max_seconds=COMPLETION_RETRY_SECONDS
    )


class RunExecutor:
    """Runs claimed runs in the worker's handler threads.

    Args:
        app: finds and calls the handlers.
        client: the worker's client (the contexts' and the failures').
        queue: the worker's (first) queue; each run is executed on its own (`Run.queue`).
        claim_timeout: the lease length (the contexts report it).
        inflight: where the runs come from and go back to.
        completer: takes the results to commit.
        events: logs each run's start and end and calls the lifecycle hooks
            (default: logs only).
    """

    def __init__(
        self,
        app: WorkerApp,
        client: Client,
        queue: str,
        claim_timeout: int,
        inflight: InFlight,
        completer: CompletionSink,
        events: RunEvents | None = None,
    ) -> None:
        self._app = app
        self._events = events or RunEvents(None)
        self._client = client
        self._queue = queue
        self._claim_timeout = claim_timeout
        self._inflight = inflight
        self._completer = completer
        self._deadlines = Deadlines(self._timed_out_for_good)

    def drain(self) -> None:
        """A handler thread's work for one slot: run buffered runs until none is left."""
        while (run := self._inflight.take()) is not None:
            self.execute(run)

    def execute(self, run: Run) -> None:
        """Run one run to its end; it leaves `inflight` here unless its completion was queued."""
        keep = False
        try:
            keep = self._handle(run)
        except BaseException as exc:  # never let a run kill its thread silently
            run.log.error("unexpected error while running the task: %s", type(exc).__name__, exc_info=True)
            try:
                self._fail(run, reason_of(exc))
            except BaseException:
                run.log.error("could not record the failure; the lease will expire and the task retry")
        finally:
            if not keep:
                self._inflight.finish((run,))

    def _handle(self, run: Run) -> bool:
        """Run the handler; returns True when a completion was queued for the completer."""
        row = run.row
        undecodable = [
            key
            for key in ("params", "headers", "event_payload", "checkpoints")
            if isinstance(row.get(key), _json.UndecodableJSON)
        ]
        if undecodable:
            message = (
                f"the task's {' and '.join(undecodable)} cannot be decoded: JSON nested deeper "
                f"than Python can parse (the client refuses more than {_json.MAX_JSON_DEPTH} levels)"
            )
            run.log.error("%s", message)
            self._fail(run, {"type": "UndecodableJSON", "message": message})
            return False
        handler = self._app.handler_for(row["task_name"])
        if handler is None:
            run.log.warning(
                "no handler for task %r; retrying in %.0f s", row["task_name"], UNKNOWN_TASK_RETRY_SECONDS
            )
            self._fail(
                run,
                {
                    "type": "$UnknownTask",
                    "message": f"no handler for task {row['task_name']!r} on queue {run.queue!r} "
                    "(and no catch-all '*' handler)",
                },
                delay=UNKNOWN_TASK_RETRY_SECONDS,
            )
            return False
        ctx = TaskContext(
            self._client,
            queue=run.queue,
            task_id=row["task_id"],
            run_id=row["run_id"],
            attempt=row["attempt"],
            task_name=row["task_name"],
            params=row["params"],
            headers=row["headers"],
            wake_event=row["wake_event"],
            event_payload=row["event_payload"],
            checkpoints=row.get("checkpoints") or {},
            claim_timeout=self._claim_timeout,
            state=run.state,
            log=run.log,
        )
        run.ctx = ctx
        self._events.started(run)
        timeout = getattr(handler, "timeout", None)
        guard = self._deadlines.watch(run, timeout) if timeout else None
        # the run's fields for teguh.TaskLogFilter, in this thread's context
        fields = _taskvars.CURRENT.set(run.log.extra)
        try:
            try:
                if _tracing.enabled():
                    with _tracing.run_span(ctx):
                        result = self._app.run_handler(handler, row["params"], ctx)
                else:
                    result = self._app.run_handler(handler, row["params"], ctx)
            finally:
                _taskvars.CURRENT.reset(fields)
                if guard is not None:
                    guard.finish()
        except BaseException as exc:
            return self._handle_exception(run, handler, exc, guard)
        if guard is not None and guard.finish():
            return False  # the worker gave up on this call and recorded its timeout
        try:
            text = _json.dumps(
                result, f"result of task {row['task_name']!r}", max_bytes=self._client.max_payload_bytes
            )
        except Exception as exc:  # TypeError, InvalidArgument, PayloadTooLarge, anything a __repr__ raises
            message = clean_text(
                f"the task's result cannot be stored: {safe_str(exc)}", MAX_FAILURE_MESSAGE_CHARS
            )
            run.log.warning("returned a result that cannot be stored: %s", message[:1000])
            self._fail(run, {"type": clean_text(type(exc).__name__, 200), "message": message})
            return False
        if _faults.ARMED is not None:
            _faults.hit("before_complete")
        run.state.completing = True
        self._completer.submit(run, text)
        return True

    def _handle_exception(self, run: Run, handler: Any, exc: BaseException, guard: Guard | None) -> bool:
        """What a handler's exception means for its run; returns False (nothing queued)."""
        # the asynchronous TimeoutExceeded may have surfaced inside the first finish()
        if guard is not None and guard.finish():
            return False  # the worker gave up on this call and recorded its timeout
        if isinstance(exc, Suspended):
            run.log.info("suspended: %s", exc)
        elif isinstance(exc, Cancelled):
            self._events.cancelled(run)
        elif isinstance(exc, LeaseLost):
            run.log.warning("lost its lease; another run owns the task now")
        elif isinstance(exc, TimeoutExceeded) and guard is not None:
            run.log.warning("timed out after %g s", guard.seconds)
            self._fail(run, _timeout_reason(run, guard.seconds))
        elif isinstance(exc, Snooze):
            run.log.info("snoozed: %s", exc)
            self._snooze(run, exc.delay)
        else:
            reason = reason_of(exc)
            non_retryable = isinstance(exc, (NonRetryable, *getattr(handler, "non_retryable", ())))
            run.log.warning(
                "failed%s: %s: %s",
                " (non-retryable)" if non_retryable else "",
                reason["type"],
                reason["message"][:1000],
                exc_info=not isinstance(exc, (ConnectionLost, NonRetryable, RetryAfter)),
            )
            if non_retryable:
                self._fail(run, reason, final=True)
            elif isinstance(exc, RetryAfter) and isinstance(exc.delay, datetime):
                self._fail(run, reason, at=exc.delay)
            elif isinstance(exc, RetryAfter):
                self._fail(run, reason, delay=exc.delay)
            else:
                self._fail(run, reason)
        return False

    def _snooze(self, run: Run, delay: float | datetime) -> None:
        if run.state.cancelled or run.state.lost:
            return
        self._record(run, "snooze", lambda: self._client.snooze_run(run.queue, run.run_id, delay))

    def _timed_out_for_good(self, run: Run, seconds: float) -> None:
        """Record the timeout of a handler that did not unwind (called by `Deadlines`, in its own thread)."""
        run.log.error(
            "still running after its timeout and the grace; failing the attempt without it "
            "(the thread cannot be stopped: its slot counts toward max_stuck_runs)"
        )
        try:
            self._fail(run, _timeout_reason(run, seconds))
        finally:
            run.state.lost = True  # whatever the handler does now is refused or dropped

    def _fail(
        self,
        run: Run,
        reason: dict[str, Any],
        *,
        delay: float | None = None,
        at: datetime | None = None,
        final: bool = False,
    ) -> None:
        if run.state.cancelled or run.state.lost:
            if run.state.cancelled:
                self._events.cancelled(run)
            return
        if delay is None and at is None and not run.row.get("retry_strategy"):
            delay = DEFAULT_BACKOFF.delay(run.row["attempt"])
        limit = run.row.get("max_attempts")
        for_good = final or (limit is not None and limit > 0 and run.row["attempt"] >= limit)
        if final:
            run.log.error("failed for good (non-retryable) at attempt %d: %s", run.row["attempt"],
                          reason.get("message"))
        elif run.row.get("max_attempts") is not None and run.row["attempt"] >= run.row["max_attempts"]:
            run.log.error(
                "failed for good after %d attempt(s): %s", run.row["attempt"], reason.get("message")
            )
        outcome = self._record(run, "failure", lambda: self._fail_now(run, reason, delay, at, final))
        if outcome == "ok":
            if for_good:
                self._events.failed(run, reason)
            else:
                self._events.retrying(run, reason, delay, at)
        elif outcome == "cancelled":
            self._events.cancelled(run)

    @staticmethod
    def _record(run: Run, what: str, call: Any) -> str:
        """Commit a run's outcome (`what`: "failure", "snooze"), retrying transient errors; never raises.

        Returns "ok", "cancelled" (the task was cancelled first), "lost" (the
        lease was gone) or "error" (not recorded).
        """
        try:
            retrying(call)
        except Cancelled:
            run.log.info("cancelled before its %s was recorded", what)
            return "cancelled"
        except LeaseLost:
            run.log.warning("lost its lease before its %s was recorded", what)
            return "lost"
        except Exception as exc:  # the handler thread must outlive any error
            run.log.error(
                "could not record the %s (%s); the lease will expire and the task retry",
                what,
                error_message(exc),
            )
            return "error"
        return "ok"

    def _fail_now(
        self, run: Run, reason: dict[str, Any], delay: float | None, at: datetime | None, final: bool
    ) -> None:
        text = _json.dumps(reason, "failure reason", max_bytes=None)
        if final:
            self._client._fail_run_non_retryable(run.queue, run.run_id, text)
        elif at is not None:
            self._client._fail_run_at(run.queue, run.run_id, text, at)
        else:
            # a delay is measured on the database's clock, like every time in teguh
            self._client._fail_run_after(run.queue, run.run_id, text, delay)


def _timeout_reason(run: Run, seconds: float) -> dict[str, Any]:
    return {
        "type": "$Timeout",
        "message": f"attempt {run.row['attempt']} ran longer than its timeout of {seconds:g} s",
    }
