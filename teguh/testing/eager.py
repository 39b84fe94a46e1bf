"""Eager mode: an app's spawned tasks run inline, in memory, without a database.

`EagerRunner` keeps tasks, checkpoints, sleeps and events in dictionaries, and
`_EagerBackend` answers the calls a `TaskContext` makes (the `RunCalls`
protocol of `teguh.context`) from them, so handlers run unchanged. It is a
second implementation of the engine's semantics: a change to what a context
calls, or to how the engine answers, must be made here too
(tests/testing/test_conformance.py runs the same handlers both ways).

Failures: a handler's exception is recorded on its task and, with
`propagate=True`, re-raised from the call that ran it (a spawn, an emit, an
`advance`). Known differences from a worker are listed on `EagerRunner`.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import threading
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from .. import _json, _time, _validate
from ..context import TaskContext
from ..errors import (
    Cancelled,
    EventTimeout,
    InvalidArgument,
    LeaseLost,
    Snooze,
    Suspended,
    TaskNotFound,
    TeguhError,
)
from ..results import TERMINAL_STATES, EmitResult, SpawnResult, TaskResult
from . import _advance

if TYPE_CHECKING:
    from ..app import App

logger = logging.getLogger("teguh.testing")


@dataclass
class _Wait:
    event_name: str
    timeout_at: datetime | None
    timed_out: bool = False


@dataclass
class _ChildWait:
    step_name: str
    children: list[str]
    timeout_at: datetime | None
    timed_out: bool = False


@dataclass
class EagerTask:
    """A task spawned in eager mode: its inputs, its state and its durable memory."""

    task_id: str
    queue: str
    task_name: str
    params: Any
    headers: dict[str, Any]
    state: str = "pending"
    attempts: int = 1
    runs: int = 0
    snoozes: int = 0
    result: Any = None
    failure: Any = None
    finished_at: datetime | None = None
    cancelled_at: datetime | None = None
    wake_at: datetime | None = None
    wake_event: str | None = None
    event_payload: Any = None
    checkpoints: dict[str, Any] = field(default_factory=dict)
    sleeps: dict[str, datetime] = field(default_factory=dict)
    waits: dict[str, _Wait] = field(default_factory=dict)
    parent_task_id: str | None = None
    progress: Any = None
    child_wait: _ChildWait | None = None

    def as_result(self) -> TaskResult:
        """This task as the `TaskResult` a real `get_task_result` would return."""
        return TaskResult(
            task_id=self.task_id,
            state=self.state,
            attempts=self.attempts,
            result=self.result,
            failure=self.failure,
            cancelled_at=self.cancelled_at,
            finished_at=self.finished_at,
            snoozes=self.snoozes,
        )


def _roundtrip(value: Any, what: str) -> Any:
    # Through JSON, as in the database: a tuple comes back as a list, and a
    # value that could not be stored fails here as it would in production.
    return json.loads(_json.dumps(value, what))


class _EagerBackend:
    """The in-memory stand-in for `Client` that an eager `TaskContext` talks to.

    Implements `teguh.context.RunCalls`; `conn=` and lease extensions mean
    nothing without a database and are accepted and ignored.
    """

    max_payload_bytes = _json.DEFAULT_MAX_PAYLOAD_BYTES

    def __init__(self, runner: EagerRunner) -> None:
        self._runner = runner

    def _set_checkpoint_json(
        self,
        queue: str,
        task_id: str,
        step_name: str,
        state_json: str,
        owner_run_id: str,
        extend: int | None,
    ) -> None:
        self._runner._task(task_id).checkpoints[step_name] = json.loads(state_json)

    def sleep_run(
        self,
        queue: str,
        run_id: str,
        step_name: str,
        duration: float | None = None,
        wake_at: datetime | None = None,
    ) -> tuple[bool, datetime]:
        runner = self._runner
        task = runner._by_run[run_id]
        if step_name not in task.sleeps:
            task.sleeps[step_name] = (
                wake_at if wake_at is not None else runner.now + timedelta(seconds=duration or 0)
            )
        wake = task.sleeps[step_name]
        if runner.skip_sleeps or wake <= runner.now:
            return False, wake
        task.wake_at = wake
        return True, wake

    def await_event(
        self, queue: str, task_id: str, run_id: str, step_name: str, event_name: str, timeout: Any = None
    ) -> tuple[bool, Any]:
        runner = self._runner
        task = runner._task(task_id)
        key = (queue, event_name)
        wait = task.waits.get(step_name)
        if wait is not None and wait.timed_out:
            err = EventTimeout(
                f"event {event_name!r} was not emitted in time", queue=queue, task_id=task_id, run_id=run_id
            )
            err.event_name, err.step_name = event_name, step_name
            raise err
        if key in runner._events:
            payload = runner._events[key]
            task.checkpoints[step_name] = payload
            task.waits.pop(step_name, None)
            return False, payload
        if wait is None:
            timeout_at = None if timeout is None else runner.now + timedelta(seconds=timeout)
            task.waits[step_name] = _Wait(event_name, timeout_at)
        return True, None

    def emit_event(self, queue: str, event_name: str, payload: Any = None) -> EmitResult:
        return self._runner._emit(queue, event_name, payload)

    def extend_claim(self, queue: str, run_id: str, extend_by: Any) -> None:
        task = self._runner._by_run[run_id]
        if task.state == "cancelled":
            raise Cancelled("task has been cancelled", queue=queue, task_id=task.task_id, run_id=run_id)

    def spawn_task(self, queue: str, task_name: str, params: Any = None, **options: Any) -> SpawnResult:
        return self._runner._spawn(queue, task_name, params, options)

    def _spawn_children(
        self,
        queue: str,
        parent_queue: str,
        parent_task_id: str,
        parent_run_id: str,
        items: Any,
    ) -> list[SpawnResult]:
        runner = self._runner
        spawned = []
        for item in items:
            options = {k: v for k, v in item.items() if k not in ("task_name", "params")}
            result = runner._spawn(queue, item["task_name"], item.get("params"), options)
            if result.created:
                runner._tasks[result.task_id].parent_task_id = parent_task_id
            spawned.append(result)
        return spawned

    def _await_children(
        self,
        queue: str,
        task_id: str,
        run_id: str,
        step_name: str,
        children: Any,
        timeout: int | None = None,
    ) -> tuple[bool, list[dict[str, Any]] | None, bool]:
        runner = self._runner
        task = runner._task(task_id)
        kids = []
        for _, child_id in children:
            kid = runner._tasks.get(str(child_id))
            if kid is None or kid.parent_task_id != task.task_id:
                raise InvalidArgument(f"task {child_id} is not a child of task {task_id}")
            kids.append(kid)
        wait = task.child_wait
        if wait is not None and wait.step_name == step_name and wait.timed_out:
            task.child_wait = None
            return False, None, True
        if all(k.state in TERMINAL_STATES for k in kids):
            task.child_wait = None
            outcomes = [{"state": k.state, "result": k.result, "failure": k.failure} for k in kids]
            task.checkpoints[step_name] = outcomes
            return False, outcomes, False
        if timeout == 0:
            return False, None, True
        if wait is None or wait.step_name != step_name:
            timeout_at = None if timeout is None else runner.now + timedelta(seconds=timeout)
            task.child_wait = _ChildWait(step_name, [k.task_id for k in kids], timeout_at)
        return True, None, False

    def _report_progress(self, queue: str, task_id: str, run_id: str, progress_json: str) -> None:
        task = self._runner._task(task_id)
        progress = json.loads(progress_json)
        if isinstance(progress, dict):
            progress["updated_at"] = self._runner.now.isoformat()
        task.progress = progress


class EagerRunner:
    """Runs an app's spawned tasks inline, in memory (see `eager`).

    While active, `app.spawn_task` and every `Task.spawn` run the task's
    handler in the calling thread before returning. Work the handler starts
    (child spawns, events that wake other tasks) runs too, in order, before
    the outermost call returns. The database is never touched.

    Time is virtual: it starts at the real time and moves only with
    `advance()`. A durable sleep suspends its task until `advance()` passes
    the wake-up (or returns at once with `skip_sleeps=True`); `await_event`
    suspends until `emit_event()` (or until `advance()` passes its timeout,
    and then raises `EventTimeout` in the handler).

    Args:
        app: the app whose handlers run.
        propagate: re-raise a handler's exception from the spawn (or the
            `emit_event`/`advance` that resumed it), after recording the task
            as failed. With False, only the record shows the failure.
        skip_sleeps: durable sleeps return at once.
        start: the virtual start time (aware; default: now).

    Caveats: each task runs once per wake-up and a failure is final (no
    retries, no backoff: test retry strategies with a worker and a
    `FakeClock`); `teguh.RetryAfter` and `teguh.NonRetryable` fail the task
    like any exception. `teguh.Snooze(delay)` puts the task to sleep (no
    attempt used, `snoozes` counted) until `advance()` passes the delay. A
    task's `timeout` is not enforced. A `conn=` transaction is ignored: the task runs at once,
    even if the caller's transaction later rolls back (the Flask extension's
    `session=` does better: the task runs when the session commits, and is
    forgotten if it rolls back). Tasks spawned through `Client.spawn_task`
    directly are not intercepted.
    """

    def __init__(
        self,
        app: App,
        *,
        propagate: bool = True,
        skip_sleeps: bool = False,
        start: datetime | None = None,
    ) -> None:
        self.app = app
        self.propagate = propagate
        self.skip_sleeps = skip_sleeps
        self.now = datetime.now(timezone.utc) if start is None else _time.require_aware(start, "start")
        self._tasks: dict[str, EagerTask] = {}
        self._by_run: dict[str, EagerTask] = {}
        self._keys: dict[tuple[str, str], str] = {}
        self._events: dict[tuple[str, str], Any] = {}
        self._emitted_at: dict[tuple[str, str], datetime] = {}
        self._ready: collections.deque[EagerTask] = collections.deque()
        self._draining = False
        self._lock = threading.RLock()
        self._backend = _EagerBackend(self)
        self._active = False

    # -- activation ---------------------------------------------------------

    def __enter__(self) -> EagerRunner:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Intercept the app's spawns (what entering the `with` block does).

        Raises:
            TeguhError: the app is already in eager mode.
        """
        # Integrations read `app.eager_runner` to route their other calls
        # (events, results) here too, and to skip resolving a transaction never used.
        self.app.set_eager_runner(self)
        self._active = True

    def stop(self) -> None:
        """Give the app its real `spawn_task` back; idempotent."""
        if self._active and self.app.eager_runner is self:
            self.app.set_eager_runner(None)
        self._active = False

    # -- the app-facing calls ---------------------------------------------------

    def spawn_task(
        self,
        task_name: str,
        params: Any = None,
        *,
        queue: str | None = None,
        conn: Any = None,
        **options: Any,
    ) -> SpawnResult:
        """Spawn like `App.spawn_task` (same arguments), then run the task inline.

        Returns the `SpawnResult`; the outcome is in `result(task_id)`.
        """
        handler = self.app.get_task(task_name)
        merged = {**(handler.defaults if handler is not None else {}), **options}
        target = _validate.queue_name(queue or self.app.queue_of(task_name))
        with self._lock:
            spawned = self._spawn(target, task_name, params, merged)
            self._drain()
        return spawned

    def spawn_later(
        self, task_name: str, params: Any = None, *, queue: str | None = None, **options: Any
    ) -> SpawnResult:
        """Record a spawn without running it: `run(task_id)` runs it, `discard(task_id)` forgets it.

        For spawns inside a transaction: run on commit, discard on rollback
        (the Flask extension does this for `session=`).
        """
        handler = self.app.get_task(task_name)
        merged = {**(handler.defaults if handler is not None else {}), **options}
        merged.pop("conn", None)
        target = _validate.queue_name(queue or self.app.queue_of(task_name))
        with self._lock:
            return self._spawn(target, task_name, params, merged, hold=True)

    def run(self, task_id: str) -> None:
        """Run a task recorded by `spawn_later` (and what it starts), unless it ran already."""
        with self._lock:
            task = self._task(task_id)
            if task.state == "pending" and task.runs == 0 and task not in self._ready:
                self._ready.append(task)
            self._drain()

    def discard(self, task_id: str) -> None:
        """Forget a task that has not run (its spawn was rolled back)."""
        with self._lock:
            task = self._task(task_id)
            if task.runs:
                raise TeguhError(f"task {task_id} already ran; it cannot be discarded")
            del self._tasks[task.task_id]
            for key, value in list(self._keys.items()):
                if value == task.task_id:
                    del self._keys[key]
            with contextlib.suppress(ValueError):
                self._ready.remove(task)

    def emit_event(self, event_name: str, payload: Any = None, *, queue: str | None = None) -> EmitResult:
        """Emit an event (first emit wins) and run the tasks it wakes, inline.

        Returns an `EmitResult` as `Client.emit_event` does (times are virtual).
        """
        with self._lock:
            emitted = self._emit(queue or self.app.queue, _validate.name(event_name, "event name"), payload)
            self._drain()
        return emitted

    def advance(self, delta: float | timedelta | None = None, **parts: float) -> int:
        """Move virtual time forward; run the sleepers now due and time out expired waits.

        Takes seconds, a timedelta, or timedelta keywords (`advance(hours=24)`).
        Returns how many tasks it woke.
        """
        with self._lock:
            self.now += _advance.delta(delta, parts)
            woken = 0
            for task in list(self._tasks.values()):
                if task.state != "sleeping":
                    continue
                due = task.wake_at is not None and task.wake_at <= self.now
                for wait in task.waits.values():
                    if wait.timeout_at is not None and wait.timeout_at <= self.now and not wait.timed_out:
                        wait.timed_out = due = True
                kids = task.child_wait
                if kids is not None and kids.timeout_at is not None and kids.timeout_at <= self.now:
                    kids.timed_out = due = True
                if due:
                    task.wake_at = None
                    self._ready.append(task)
                    woken += 1
            self._drain()
            return woken

    def cancel_task(self, task_id: str, *, children: bool = True) -> None:
        """Cancel a task that has not finished (a sleeping task never wakes).

        With `children` (the default) its unfinished children are cancelled
        first, as `Client.cancel_task` does.
        """
        with self._lock:
            self._cancel(self._task(task_id), children)
            self._drain()

    def _cancel(self, task: EagerTask, children: bool) -> None:
        # children first, as the engine does; a parent they wake is cancelled before it runs
        if children:
            for kid in list(self._tasks.values()):
                if kid.parent_task_id == task.task_id and kid.state not in TERMINAL_STATES:
                    self._cancel(kid, True)
        if task.state not in TERMINAL_STATES:
            task.state = "cancelled"
            task.cancelled_at = task.finished_at = self.now
            self._child_ended(task)

    def progress(self, task_id: str) -> Any:
        """The last progress a task reported (`ctx.report_progress`), like `Client.get_progress`."""
        return self._task(task_id).progress

    def result(self, task_id: str) -> TaskResult:
        """The state and outcome of a task, like `Client.get_task_result`.

        Raises:
            TaskNotFound: no task with this id was spawned here.
        """
        return self._task(task_id).as_result()

    def checkpoints(self, task_id: str) -> dict[str, Any]:
        """A task's stored step results by step name (a copy)."""
        return dict(self._task(task_id).checkpoints)

    @property
    def tasks(self) -> list[EagerTask]:
        """Every task spawned in this runner, in spawn order."""
        return list(self._tasks.values())

    def find(self, task_name: str) -> list[EagerTask]:
        """The tasks named `task_name`, in spawn order."""
        return [t for t in self._tasks.values() if t.task_name == task_name]

    # -- internals ------------------------------------------------------------

    def _task(self, task_id: str) -> EagerTask:
        try:
            return self._tasks[str(task_id)]
        except KeyError:
            raise TaskNotFound(f"no eager task {task_id!r}", task_id=task_id) from None

    def _spawn(
        self, queue: str, task_name: str, params: Any, options: dict[str, Any], *, hold: bool = False
    ) -> SpawnResult:
        task_name = _validate.name(task_name, "task_name")
        params = _roundtrip(params, "params")
        key = options.get("idempotency_key")
        if key is not None and (queue, key) in self._keys:
            existing = self._tasks[self._keys[(queue, key)]]
            return SpawnResult(
                task_id=existing.task_id, run_id=None, attempt=existing.attempts, created=False
            )
        headers = _roundtrip(options.get("headers") or {}, "headers")
        task = EagerTask(str(uuid.uuid4()), queue, task_name, params, headers)
        self._tasks[task.task_id] = task
        if key is not None:
            self._keys[(queue, key)] = task.task_id
        available_at = options.get("available_at")
        if available_at is not None and _time.require_aware(available_at, "available_at") > self.now:
            task.state, task.wake_at = "sleeping", available_at
        elif not hold:
            self._ready.append(task)
        return SpawnResult(task_id=task.task_id, run_id=None, attempt=1, created=True)

    def _emit(self, queue: str, event_name: str, payload: Any) -> EmitResult:
        key = (queue, event_name)
        payload = _roundtrip(payload, "payload")
        if key in self._events:
            # the first emit wins and wakes; later ones change nothing
            return EmitResult(False, self._emitted_at[key], self._events[key] == payload)
        self._events[key] = payload
        self._emitted_at[key] = self.now
        for task in self._tasks.values():
            if task.state != "sleeping" or task.queue != queue:
                continue
            for step, wait in list(task.waits.items()):
                if wait.event_name == event_name and not wait.timed_out:
                    task.checkpoints[step] = payload
                    del task.waits[step]
                    task.wake_event, task.event_payload = event_name, payload
                    if task not in self._ready:
                        self._ready.append(task)
        return EmitResult(True, self.now, True)

    def _child_ended(self, task: EagerTask) -> None:
        # the engine's _children_ended: the last awaited child wakes its parent
        parent = self._tasks.get(task.parent_task_id) if task.parent_task_id else None
        if parent is None or parent.state != "sleeping" or parent.child_wait is None:
            return
        if task.task_id not in parent.child_wait.children:
            return
        if all(self._tasks[k].state in TERMINAL_STATES for k in parent.child_wait.children):
            parent.child_wait = None
            if parent not in self._ready:
                self._ready.append(parent)

    def _drain(self) -> None:
        if self._draining:
            return  # an outer call is already running the queue (a spawn inside a handler)
        self._draining = True
        try:
            while self._ready:
                self._execute(self._ready.popleft())
        finally:
            self._draining = False

    def _execute(self, task: EagerTask) -> None:
        if task.state in TERMINAL_STATES:
            return
        handler = self.app.handler_for(task.task_name)
        if handler is None:
            logger.warning("eager: no handler for task %r; it stays pending", task.task_name)
            task.state = "pending"
            return
        run_id = str(uuid.uuid4())
        self._by_run[run_id] = task
        task.state = "running"
        task.runs += 1
        ctx = TaskContext(
            self._backend,
            queue=task.queue,
            task_id=task.task_id,
            run_id=run_id,
            attempt=task.attempts,
            task_name=task.task_name,
            params=task.params,
            headers=task.headers,
            wake_event=task.wake_event,
            event_payload=task.event_payload,
            checkpoints=task.checkpoints,
            claim_timeout=0,
        )
        task.wake_event = task.event_payload = None
        try:
            result = self.app.run_handler(handler, task.params, ctx)
            task.result = _roundtrip(result, f"result of task {task.task_name!r}")
        except Suspended:
            task.state = "sleeping"
            return
        except Snooze as sig:
            # back to waiting without an attempt, like the engine's snooze_run
            task.state = "sleeping"
            task.snoozes += 1
            delay = sig.delay
            task.wake_at = delay if isinstance(delay, datetime) else self.now + timedelta(seconds=delay)
            return
        except (Cancelled, LeaseLost):
            task.state = "cancelled"
            task.cancelled_at = task.finished_at = self.now
            self._child_ended(task)
            return
        except Exception as exc:
            task.state = "failed"
            task.finished_at = self.now
            task.failure = {
                "type": type(exc).__name__,
                "message": str(exc),
                "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
            }
            self._child_ended(task)
            if self.propagate:
                raise
            return
        task.state = "completed"
        task.finished_at = self.now
        self._child_ended(task)


def eager(
    app: App, *, propagate: bool = True, skip_sleeps: bool = False, start: datetime | None = None
) -> EagerRunner:
    """Run `app`'s spawned tasks inline while the returned runner is active.

    ```python
    with teguh.testing.eager(app) as runner:
        spawned = send_email.spawn({"to": "a@b.c"})
        assert runner.result(spawned.task_id).result == {"sent": True}
    ```

    See `EagerRunner` for the arguments and caveats.
    """
    return EagerRunner(app, propagate=propagate, skip_sleeps=skip_sleeps, start=start)
