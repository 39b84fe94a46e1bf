"""Test helpers shipped with teguh: eager execution, a fake clock, a worker in a thread.

* `eager(app)` runs spawned tasks inline, in memory, without a database:
  steps, durable sleeps (driven by `runner.advance(...)`) and events
  (`runner.emit_event(...)`) behave as they do in a worker.
* `FakeClock(app)` pins the engine's clock (`teguh.fake_now`) on every
  connection of an app's client and its workers, against a real database, so
  `clock.advance(days=1)` finishes a task's `ctx.sleep_for("wait", timedelta(days=1))` now.
* `worker_thread(app)` runs a real `Worker` in a thread for the length of a
  `with` block.
* `temporary_database()` creates a database with the schema installed and
  drops it afterwards; `use_database(app, dsn)` points an app at it.

The pytest plugin (`_teguh_pytestplugin`, loaded automatically) wraps these as
fixtures: `teguh_dsn`, `teguh_app`, `teguh_eager`, `teguh_clock`, `teguh_worker`.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import logging
import os
import threading
import traceback
import uuid
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from . import _dsn, _json, _time, _validate
from .app import App
from .client import Client, install
from .context import TaskContext
from .errors import Cancelled, EventTimeout, LeaseLost, Suspended, TaskNotFound, TeguhError
from .results import TERMINAL_STATES, SpawnResult, TaskResult
from .worker import Worker

__all__ = [
    "EagerRunner",
    "EagerTask",
    "FakeClock",
    "eager",
    "temporary_database",
    "use_database",
    "worker_thread",
]

logger = logging.getLogger("teguh.testing")

WORKER_START_TIMEOUT = 15.0
"""Seconds `worker_thread` waits for the worker to listen before giving up."""

WORKER_STOP_TIMEOUT = 20.0
"""Seconds `worker_thread` waits for the worker to stop at the end of the block."""


def _delta(delta: float | timedelta | None, parts: dict[str, float]) -> timedelta:
    """`advance()`'s argument: seconds, a timedelta, or timedelta keywords (`hours=24`)."""
    if delta is not None and parts:
        raise TypeError("give a duration or timedelta keywords, not both")
    if delta is None:
        if not parts:
            raise TypeError("advance() needs a duration, e.g. advance(hours=24)")
        step = timedelta(**parts)
    else:
        step = timedelta(seconds=_time.to_seconds(delta, "delta"))
    if step < timedelta(0):
        raise ValueError("time only moves forward")
    return step


# -- eager mode ---------------------------------------------------------------


@dataclass
class _Wait:
    event_name: str
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
        )


def _roundtrip(value: Any, what: str) -> Any:
    # Through JSON, as in the database: a tuple comes back as a list, and a
    # value that could not be stored fails here as it would in production.
    return json.loads(_json.dumps(value, what))


class _EagerBackend:
    """The in-memory stand-in for `Client` that an eager `TaskContext` talks to."""

    max_payload_bytes = _json.DEFAULT_MAX_PAYLOAD_BYTES

    def __init__(self, runner: EagerRunner) -> None:
        self._runner = runner

    def set_checkpoint(
        self,
        queue: str,
        task_id: str,
        step_name: str,
        state: Any,
        owner_run_id: str,
        extend_claim_by: Any = 0,
    ) -> None:
        self._runner._task(task_id).checkpoints[step_name] = _roundtrip(state, f"step {step_name!r}")

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

    def emit_event(self, queue: str, event_name: str, payload: Any = None) -> None:
        self._runner._emit(queue, event_name, payload)

    def extend_claim(self, queue: str, run_id: str, extend_by: Any) -> None:
        task = self._runner._by_run[run_id]
        if task.state == "cancelled":
            raise Cancelled("task has been cancelled", queue=queue, task_id=task.task_id, run_id=run_id)

    def spawn_task(self, queue: str, task_name: str, params: Any = None, **options: Any) -> SpawnResult:
        return self._runner._spawn(queue, task_name, params, options)


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
    `FakeClock`). A `conn=` transaction is ignored: the task runs at once,
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
        if "spawn_task" in vars(self.app):
            raise TeguhError("this app is already in eager mode")
        # An instance attribute shadows App.spawn_task for this app only;
        # Task.spawn and framework integrations all go through it.
        self.app.spawn_task = self.spawn_task  # type: ignore[method-assign]
        # Integrations look for this to route their other calls (events,
        # results) here too, and to skip resolving a transaction never used.
        self.app._eager_runner = self  # type: ignore[attr-defined]
        self._active = True

    def stop(self) -> None:
        """Give the app its real `spawn_task` back; idempotent."""
        if self._active and vars(self.app).get("spawn_task") == self.spawn_task:
            del self.app.spawn_task
            vars(self.app).pop("_eager_runner", None)
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
        handler = self.app._tasks.get(task_name)
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
        handler = self.app._tasks.get(task_name)
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

    def emit_event(self, event_name: str, payload: Any = None, *, queue: str | None = None) -> None:
        """Emit an event (first emit wins) and run the tasks it wakes, inline."""
        with self._lock:
            self._emit(queue or self.app.queue, _validate.name(event_name, "event name"), payload)
            self._drain()

    def advance(self, delta: float | timedelta | None = None, **parts: float) -> int:
        """Move virtual time forward; run the sleepers now due and time out expired waits.

        Takes seconds, a timedelta, or timedelta keywords (`advance(hours=24)`).
        Returns how many tasks it woke.
        """
        with self._lock:
            self.now += _delta(delta, parts)
            woken = 0
            for task in list(self._tasks.values()):
                if task.state != "sleeping":
                    continue
                due = task.wake_at is not None and task.wake_at <= self.now
                for wait in task.waits.values():
                    if wait.timeout_at is not None and wait.timeout_at <= self.now and not wait.timed_out:
                        wait.timed_out = due = True
                if due:
                    task.wake_at = None
                    self._ready.append(task)
                    woken += 1
            self._drain()
            return woken

    def cancel_task(self, task_id: str) -> None:
        """Cancel a task that has not finished (a sleeping task never wakes)."""
        with self._lock:
            task = self._task(task_id)
            if task.state not in TERMINAL_STATES:
                task.state = "cancelled"
                task.cancelled_at = task.finished_at = self.now

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

    def _emit(self, queue: str, event_name: str, payload: Any) -> None:
        key = (queue, event_name)
        if key in self._events:
            return  # the first emit wins and wakes; later ones change nothing
        self._events[key] = payload = _roundtrip(payload, "payload")
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
            self._backend,  # type: ignore[arg-type]
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
        except (Cancelled, LeaseLost):
            task.state = "cancelled"
            task.cancelled_at = task.finished_at = self.now
            return
        except Exception as exc:
            task.state = "failed"
            task.finished_at = self.now
            task.failure = {
                "type": type(exc).__name__,
                "message": str(exc),
                "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
            }
            if self.propagate:
                raise
            return
        task.state = "completed"
        task.finished_at = self.now


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


# -- the fake clock -------------------------------------------------------------


class FakeClock:
    """Pins `teguh.current_time()` for an app's client and workers, on a real database.

    Every call the clients make first sets the session setting `teguh.fake_now`
    (through `Client.session_hooks`) when the connection does not have the
    current fake time yet: pooled connections keep it as a session setting,
    a caller's `conn=` transaction gets it for that transaction only. Workers
    built by the app (`app.worker()`, `worker_thread`, `teguh_worker`) share
    the app client's hooks, so they see the same time.

    The clock is frozen: it moves only with `advance()` or `set()`, which then
    run the engine's `ticker()` under the new time, so sleepers and event waits
    now due become ready and running workers are notified at once.

    Args:
        target: a `teguh.App` (its client) or a `Client`.
        start: the starting time (aware); default: the database's current time.

    Caveats: frozen time stops everything time-driven, including retry
    backoff and lease expiry, until you advance it. Advancing past a running
    task's lease lets the ticker recover it (as a real clock would). Spawns
    and emits through other connections (your own SQL, another process) use
    the real clock. `close()` (or the end of a `with` block) retires the
    pooled connections that hold the fake time.
    """

    def __init__(self, target: App | Client, *, start: datetime | None = None) -> None:
        self.client: Client = target.client if isinstance(target, App) else target
        if start is None:
            start = self.client._run(
                "now", lambda cur: _scalar(cur, "select clock_timestamp()"), check_schema=False
            )
        self._now: datetime = _time.require_aware(start, "start")
        self._version = 0
        self._applied: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._closed = False
        self.client.session_hooks.append(self._hook)

    def __enter__(self) -> FakeClock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def now(self) -> datetime:
        """The fake time every hooked connection sees."""
        return self._now

    def _hook(self, cur: Any) -> None:
        conn = cur.connection
        with self._lock:
            now, version = self._now, self._version
            if conn.autocommit and self._applied.get(conn) == version:
                return
        # In a caller's transaction the setting is local to it, so it does not
        # outlive the test's transaction on the caller's connection.
        cur.execute("select set_config('teguh.fake_now', %s, %s)", (now.isoformat(), not conn.autocommit))
        if conn.autocommit:
            with self._lock:
                self._applied[conn] = version

    def set(self, when: datetime) -> int:
        """Jump to the aware datetime `when` (forward only) and run the ticker.

        Returns how many tasks the ticker made ready.
        """
        when = _time.require_aware(when, "when")
        if when < self._now:
            raise ValueError("the fake clock only moves forward")
        with self._lock:
            self._now = when
            self._version += 1
        return self.tick()

    def advance(self, delta: float | timedelta | None = None, **parts: float) -> int:
        """Move the clock forward and run the ticker; returns how many tasks became ready.

        Takes seconds, a timedelta, or timedelta keywords (`advance(hours=24)`).
        """
        return self.set(self._now + _delta(delta, parts))

    def tick(self) -> int:
        """Run `teguh.ticker()` at the fake time: wakes due sleepers and timed-out waits."""
        return self.client.ticker()

    def close(self) -> None:
        """Stop faking time: remove the hook and retire the connections that hold the fake time."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(ValueError):
            self.client.session_hooks.remove(self._hook)
        # Idle pooled connections still carry the setting; marking the pool's
        # connections stale makes the next checkout replace them.
        pool = self.client._pool
        with pool._lock:
            pool._generation += 1


def _scalar(cur: Any, query: str) -> Any:
    cur.execute(query)
    return cur.fetchone()[0]


# -- workers and databases --------------------------------------------------------


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
    worker = app.worker(queue, **options)
    errors: list[BaseException] = []

    def main() -> None:
        try:
            worker.run()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=main, name=f"teguh-test-worker-{worker.queue}", daemon=True)
    thread.start()
    try:
        while not worker.started.wait(0.05):
            if not thread.is_alive():
                raise TeguhError(f"the worker stopped before it started: {errors[0] if errors else '?'}")
        yield worker
    finally:
        worker.stop()
        thread.join(WORKER_STOP_TIMEOUT)
        if thread.is_alive():
            worker.stop(force=True)
            thread.join(5)
        worker.client.close()
    if thread.is_alive():
        raise TeguhError(f"the worker did not stop within {WORKER_STOP_TIMEOUT} s")
    if errors:
        raise TeguhError(f"worker.run() raised {errors[0]!r}") from errors[0]


@contextlib.contextmanager
def use_database(app: App, dsn: str) -> Iterator[App]:
    """Point `app` at `dsn` for the block, through a new client; restore the previous one after.

    For apps defined at import time (`app = teguh.App(queue="jobs")`) that a
    test runs against its own database. Workers built inside the block use it
    too. The block's client is closed at the end.
    """
    with app._client_lock:
        saved = app._client, app._dsn
        app._client, app._dsn = Client(dsn), dsn
    try:
        yield app
    finally:
        with app._client_lock:
            client = app._client
            app._client, app._dsn = saved
        if client is not None:
            client.close()


_db_numbers = itertools.count()


@contextlib.contextmanager
def temporary_database(server_dsn: str | None = None) -> Iterator[str]:
    """Create a fresh database with the teguh schema; yield its DSN; drop it afterwards.

    `server_dsn` points at any database of the server to use (default: the
    usual resolution: `TEGUH_DSN`, `DATABASE_URL`, `PG*`, else the embedded
    PostgreSQL). The role needs `CREATEDB`.
    """
    import psycopg2
    import psycopg2.sql

    with Client(server_dsn, min_connections=0, max_connections=1) as admin:
        base = admin.dsn
    name = f"teguh_test_{os.getpid()}_{next(_db_numbers)}_{uuid.uuid4().hex[:6]}"
    conn = psycopg2.connect(base)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(psycopg2.sql.SQL("create database {}").format(psycopg2.sql.Identifier(name)))
        dsn = psycopg2.extensions.make_dsn(base, dbname=name)
        install(dsn)
        try:
            yield dsn
        finally:
            with conn.cursor() as cur:
                cur.execute(
                    psycopg2.sql.SQL("drop database if exists {} with (force)").format(
                        psycopg2.sql.Identifier(name)
                    )
                )
    finally:
        conn.close()
        logger.debug("temporary database %s (%s) dropped", name, _dsn.describe(base))
