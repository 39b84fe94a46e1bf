"""`App`: the registry of task handlers, and the way to spawn and run them."""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from . import _validate
from ._options import SPAWN_OPTIONS, task_limits
from ._time import to_seconds
from .errors import InvalidArgument, TeguhError

if TYPE_CHECKING:
    from .client import Client
    from .context import TaskContext
    from .results import SpawnResult
    from .schedules import Schedule
    from .worker import Worker

CATCH_ALL = "*"
"""The task name of a handler that takes every task without a handler of its own."""

DEFAULT_QUEUE = "default"


class EagerSpawner(Protocol):
    """What an app in eager mode routes its spawns to (`teguh.testing.EagerRunner`).

    Declared here so that `teguh.app` does not import `teguh.testing`, which imports it.
    """

    def spawn_task(self, task_name: str, params: Any = None, **options: Any) -> SpawnResult:
        """Run the task now, in this thread, and return what a spawn returns."""
        ...


def _wants_context(fn: Callable[..., Any]) -> bool:
    """Whether a handler takes `(params, ctx)` rather than `(params)`."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return True
    positional = 0
    for p in sig.parameters.values():
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            return True
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            positional += 1
    if positional == 0:
        raise TypeError(f"handler {fn!r} must take (params) or (params, ctx)")
    return positional >= 2


def _non_retryable(value: Any) -> tuple[type[BaseException], ...]:
    """The `non_retryable=` option as a tuple of exception classes."""
    classes = (value,) if isinstance(value, type) else tuple(value)
    for cls in classes:
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise TypeError(f"non_retryable must hold exception classes, not {cls!r}")
    return classes


def _timeout(value: Any) -> float | None:
    """The `timeout=` option in seconds (> 0), or None."""
    if value is None:
        return None
    seconds = to_seconds(value, "timeout")
    if seconds <= 0:
        raise InvalidArgument(f"timeout must be > 0 seconds, not {value!r}")
    return seconds


class Task:
    """A registered handler: still callable as the plain function, plus `.spawn()`.

    `non_retryable` (exception classes that fail the task for good) and
    `timeout` (seconds per attempt, or None) are the handler's own options;
    `defaults` are the spawn options applied to every spawn; `limits` the
    flow-control limits its workers register (`concurrency`,
    `key_concurrency`, `rate_limit`; only those given).
    """

    def __init__(
        self,
        app: App,
        name: str,
        fn: Callable[..., Any],
        queue: str | None,
        defaults: dict[str, Any],
        *,
        non_retryable: tuple[type[BaseException], ...] = (),
        timeout: float | None = None,
        limits: dict[str, Any] | None = None,
    ) -> None:
        functools.update_wrapper(self, fn)
        self.app = app
        self.name = name
        self.fn = fn
        self.queue = queue
        self.defaults = defaults
        self.non_retryable = non_retryable
        self.timeout = timeout
        self.limits = dict(limits or {})
        self.takes_context = _wants_context(fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<teguh task {self.name!r} on queue {self.queue or self.app.queue!r}>"

    def spawn(self, params: Any = None, **options: Any) -> SpawnResult:
        """Spawn this task with its registered defaults, overridden by `options`.

        Takes the options of `Client.spawn_task`, plus `queue=` and `conn=`.
        """
        return self.app.spawn_task(self.name, params, **options)


class App:
    """Registers handlers with `@app.task(...)`, spawns tasks and builds workers.

    Args:
        dsn: the database (else `TEGUH_DSN`, `DATABASE_URL`, libpq's `PG*`
            variables, or the embedded PostgreSQL), used when `client` is None.
        queue: the queue of handlers registered without one.
        client: an existing `Client` to share.
        version: the app's release (say "2026.12.1"), stored with the task
            types its workers register (`Client.list_task_types`).

    The client is created on first use, so defining an app at import time
    touches no database.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        queue: str = DEFAULT_QUEUE,
        client: Client | None = None,
        version: str | None = None,
    ) -> None:
        self.queue = _validate.queue_name(queue)
        self.version = None if version is None else _validate.name(version, "version")
        self._dsn = dsn
        self._client = client
        self._client_lock = threading.Lock()
        self._tasks: dict[str, Task] = {}
        self._around_run: list[Callable[[TaskContext], contextlib.AbstractContextManager[Any]]] = []
        self._eager_runner: EagerSpawner | None = None

    @property
    def client(self) -> Client:
        """The app's `Client` (created on first use)."""
        with self._client_lock:
            if self._client is None:
                from .client import Client

                self._client = Client(self._dsn)
            return self._client

    # -- where the app connects ----------------------------------------------
    #
    # The client and DSN change only through these methods, under the lock the
    # `client` property takes, so integrations (the CLI, Flask, teguh.testing)
    # never write the app's fields themselves.

    def configure(self, dsn: str | None = None, *, replace: bool = True) -> bool:
        """Point the app at `dsn` from now on; returns whether anything changed.

        With `replace=True` (what a framework's `init_app` does), a DSN other
        than the current one closes the current client, if any, and the next
        use of `client` connects to `dsn`. With `replace=False` (a default,
        like the CLI's `--dsn`), `dsn` applies only if the app has neither a
        DSN nor a client yet: a DSN written in the app wins.

        `dsn=None` (or an empty string) changes nothing.
        """
        with self._client_lock:
            if not dsn or dsn == self._dsn:
                return False
            if not replace and (self._client is not None or self._dsn is not None):
                return False
            self._switch_dsn(dsn)
            return True

    def set_dsn(self, dsn: str | None) -> bool:
        """Point the app at exactly `dsn` from now on; returns whether anything changed.

        Unlike `configure`, None is a choice here: the app's next client resolves
        the database as `Client()` does (`TEGUH_DSN`, `DATABASE_URL`, libpq's
        `PG*` variables, then the embedded PostgreSQL). A change closes the
        current client, if any, so its pool stops serving the previous database.
        """
        with self._client_lock:
            dsn = dsn or None
            if dsn == self._dsn:
                return False
            self._switch_dsn(dsn)
            return True

    def _switch_dsn(self, dsn: str | None) -> None:
        # Caller holds _client_lock. The old pool must not keep serving calls
        # on the previous database.
        if self._client is not None:
            self._client.close()
            self._client = None
        self._dsn = dsn

    @property
    def dsn(self) -> str | None:
        """The DSN given to the app (constructor, `configure`, `set_dsn`, `use_client`).

        None when the client resolves the database itself; not the resolved DSN
        (that is `client.dsn`).
        """
        return self._dsn

    @contextlib.contextmanager
    def use_client(self, client: Client, *, dsn: str | None = None, close: bool = False) -> Iterator[Client]:
        """Make `client` the app's client for the block; restore the previous client and DSN after.

        Args:
            client: the client the app (and workers built in the block) use.
            dsn: the DSN the app holds meanwhile (what `configure` compares with,
                and what a replaced client reconnects to).
            close: close, at the end, the client the app holds then (`client`,
                or whatever replaced it in the block).

        Caveats: not a stack across threads: blocks on the same app must nest.
        """
        with self._client_lock:
            saved = self._client, self._dsn
            self._client, self._dsn = client, dsn
        try:
            yield client
        finally:
            with self._client_lock:
                current = self._client
                self._client, self._dsn = saved
            if close and current is not None:
                current.close()

    # -- eager mode (teguh.testing) -------------------------------------------

    @property
    def eager_runner(self) -> EagerSpawner | None:
        """The active `teguh.testing.EagerRunner` of this app, if a test put it in eager mode.

        Integrations route their other calls (events, results) to it, and skip
        resolving a transaction that would never be used.
        """
        return self._eager_runner

    def set_eager_runner(self, runner: EagerSpawner | None) -> None:
        """Route this app's spawns to `runner` (`teguh.testing.eager` calls it); None routes them back.

        Raises:
            TeguhError: the app is already in eager mode (with another runner).
        """
        if runner is None:
            # only undo what set_eager_runner did: someone else's override stays
            active = self._eager_runner
            if active is not None and vars(self).get("spawn_task") == active.spawn_task:
                del self.spawn_task
            self._eager_runner = None
            return
        if "spawn_task" in vars(self):
            raise TeguhError("this app is already in eager mode")
        # An instance attribute shadows spawn_task for this app only, so
        # Task.spawn, framework integrations and a subclass's own spawn_task
        # (DjangoApp's transaction routing) all reach the runner.
        self.spawn_task = runner.spawn_task  # type: ignore[method-assign]
        self._eager_runner = runner

    # -- handlers ---------------------------------------------------------------

    @property
    def tasks(self) -> dict[str, Task]:
        """The registered handlers by task name (a copy)."""
        return dict(self._tasks)

    def get_task(self, task_name: str) -> Task | None:
        """The handler registered under exactly `task_name` (no catch-all), else None."""
        return self._tasks.get(task_name)

    def task(
        self,
        name: str,
        *,
        queue: str | None = None,
        non_retryable: Any = (),
        timeout: Any = None,
        concurrency: int | None = None,
        key_concurrency: int | None = None,
        rate_limit: str | None = None,
        **spawn_defaults: Any,
    ) -> Callable[[Callable], Task]:
        """Register the decorated function as the handler of task `name`.

        `queue` is where `.spawn()` sends the task and which worker runs it
        (default: the app's queue); `spawn_defaults` are spawn options applied to
        every spawn of this task (`max_attempts`, `retry_strategy`, ...). Workers
        register `max_attempts`, `retry_strategy`, `cancellation` and `priority`
        in the database when they start, so spawns from anywhere (the CLI, SQL,
        another app) get them too (docs/handlers.md).

        Args:
            non_retryable: exception classes (or one class) that fail the task
                for good when the handler raises them, like `teguh.NonRetryable`.
            timeout: seconds (or a timedelta) one attempt may run; at the
                deadline `teguh.TimeoutExceeded` is raised into the handler and
                the attempt fails with reason `$Timeout` (docs/handlers.md says
                what a thread that cannot be interrupted does).
            concurrency: the most tasks of this type running at once, across
                every worker of the queue.
            key_concurrency: the most running at once per `concurrency_key`
                (a spawn option; default 1 when a task has a key).
            rate_limit: the most starts per second, minute or hour, as
                "20/s", "100/m" or "1000/h"; per `rate_limit_key` when a
                spawn gives one (docs/flow-control.md).

        Raises:
            ValueError: the name is blank or already registered, or an option is
                unknown (InvalidArgument, a ValueError, for a timeout <= 0, a
                limit below 1 or a malformed rate limit).
            TypeError: `non_retryable` holds something other than exception classes.
        """
        name = _validate.name(name, "task name")
        if queue is not None:
            queue = _validate.queue_name(queue)
        handler_options = {
            "non_retryable": _non_retryable(non_retryable),
            "timeout": _timeout(timeout),
            "limits": task_limits(
                name, concurrency=concurrency, key_concurrency=key_concurrency, rate_limit=rate_limit
            ),
        }
        unknown = sorted(set(spawn_defaults) - SPAWN_OPTIONS)
        if unknown:
            raise ValueError(f"unknown spawn options for task {name!r}: {', '.join(unknown)}")

        def register(fn: Callable[..., Any]) -> Task:
            if name in self._tasks:
                raise ValueError(f"task {name!r} is already registered (by {self._tasks[name].fn!r})")
            task = Task(self, name, fn, queue, dict(spawn_defaults), **handler_options)
            self._tasks[name] = task
            return task

        return register

    def around_run(
        self, hook: Callable[[TaskContext], contextlib.AbstractContextManager[Any]]
    ) -> Callable[[TaskContext], contextlib.AbstractContextManager[Any]]:
        """Register `hook(ctx)`, a context manager entered around every handler call.

        Frameworks use it to give handlers their environment (Flask's app
        context, Django's connection housekeeping). Hooks nest in registration
        order, the first registered outermost; an exception a hook raises
        fails the run like one raised by the handler. Usable as a decorator.
        """
        self._around_run.append(hook)
        return hook

    def run_handler(self, task: Task, params: Any, ctx: TaskContext) -> Any:
        """Call `task`'s handler with `params` (and `ctx`) inside the `around_run` hooks.

        An `async def` handler (any handler whose call returns a coroutine) is
        run to completion here, on an event loop of its own (see
        docs/handlers.md, "Async handlers"); the hooks wrap the whole run.
        """
        args = (params, ctx) if task.takes_context else (params,)
        if not self._around_run:
            return self._finish(task.fn(*args))
        with contextlib.ExitStack() as stack:
            for hook in self._around_run:
                stack.enter_context(hook(ctx))
            return self._finish(task.fn(*args))

    def _finish(self, result: Any) -> Any:
        """A sync handler's result as it is; an async handler's coroutine run to its result."""
        if not inspect.iscoroutine(result):
            return result
        # imported here: asyncio costs ~18 ms, and most apps' handlers are sync
        from . import _coroutines

        try:
            return self.run_coroutine(result)
        except BaseException as exc:
            # an `asyncio.TaskGroup` wraps a child's signal in a BaseExceptionGroup:
            # the run must still end as the signal says, not fail
            signal = _coroutines.control_signal(exc)
            if signal is None or signal is exc:
                raise
            raise signal from exc

    def run_coroutine(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run an async handler's coroutine to completion in this thread; returns its result.

        The default runs it on a new event loop closed when it ends.
        Integrations override it to give async code their framework's model
        (`DjangoApp` runs it through asgiref's `async_to_sync`, so the ORM's
        async calls come back to the handler thread). Whatever the coroutine
        raises, control-flow signals included, is raised unchanged.
        """
        from . import _coroutines

        return _coroutines.run(coro)

    def handler_for(self, task_name: str) -> Task | None:
        """The handler of `task_name`, else the catch-all, else None."""
        return self._tasks.get(task_name) or self._tasks.get(CATCH_ALL)

    def queue_of(self, task_name: str) -> str:
        """The queue a task is spawned on when none is given."""
        task = self._tasks.get(task_name)
        return (task.queue if task is not None else None) or self.queue

    def declared_queues(self) -> list[str]:
        """The queues this app names: its own and every registered task's, sorted.

        A worker creates its queue when it is one of these; any other queue
        must already exist (a typo must not start an empty queue).
        """
        return sorted({self.queue, *(task.queue for task in self._tasks.values() if task.queue)})

    def spawn_task(
        self, task_name: str, params: Any = None, *, queue: str | None = None, **options: Any
    ) -> SpawnResult:
        """Spawn `task_name` on `queue` (default: its handler's queue, else the app's).

        The handler's registered defaults apply first, then `options` (any
        option of `Client.spawn_task`, including `conn=` to spawn inside your own
        transaction). A task without a handler here can still be spawned: a
        worker of another app may run it.
        """
        task = self._tasks.get(task_name)
        merged = {**(task.defaults if task is not None else {}), **options}
        return self.client.spawn_task(queue or self.queue_of(task_name), task_name, params, **merged)

    def worker(
        self, queue: str | None = None, *, queues: Sequence[str] | None = None, **options: Any
    ) -> Worker:
        """Build a `Worker` running this app's handlers on `queue`, or on `queues`.

        With neither, the worker serves the app's queues: the app's own queue
        first (`Worker.queue`), then every other queue of `declared_queues()`
        (the queues its registered tasks name), with one thread pool shared by
        all of them. Takes the options of `Worker` (`concurrency`,
        `claim_timeout`, `heartbeat_interval`, `poll_interval`, `batch_size`,
        `worker_id`, `shutdown_timeout`, ...).

        Raises:
            InvalidArgument: both `queue` and `queues`, or an empty `queues`.
        """
        from .worker import Worker

        queue, queues = self._worker_queues(queue, queues)
        return Worker(self, queue, queues=queues, **options)

    def _worker_queues(
        self, queue: str | None, queues: Sequence[str] | None
    ) -> tuple[str | None, Sequence[str] | None]:
        """`Worker`'s `(queue, queues)` for `worker(queue, queues=queues)`: as given, else the app's."""
        if queue or queues is not None:
            return queue or None, queues
        served = [self.queue, *(name for name in self.declared_queues() if name != self.queue)]
        return (served[0], None) if len(served) == 1 else (None, served)

    # --- schedules ---

    def schedule(
        self,
        name: str,
        task_name: str,
        *,
        cron: str | None = None,
        every: Any = None,
        params: Any = None,
        timezone: str = "UTC",
        overlap: str = "allow",
        catch_up: str = "one",
        max_catch_up: int = 100,
        jitter: Any = 0,
        start_at: Any = None,
        end_at: Any = None,
        queue: str | None = None,
        **spawn_options: Any,
    ) -> Schedule:
        """Spawn `task_name` periodically: at each tick of `cron` (in `timezone`) or `every` interval.

        Records the definition only; the app's workers upsert it when they
        start (and delete the app's schedules the code no longer defines), and
        exactly one task is spawned per tick whatever the number of workers
        (docs/schedules.md). `cron` is 5 fields (or `@hourly`-style aliases, or
        6 with seconds first); `every` is seconds or a timedelta (>= 1 s).
        `overlap="skip"`: no task while the previous one is not terminal.
        `catch_up` ("skip", "one", "all", at most `max_catch_up`): what fires for
        ticks missed during a downtime. `jitter`: each task waits up to that
        many seconds after its tick. `queue`: default the task's queue.
        `spawn_options`: any spawn option but `idempotency_key` and `available_at`.

        Raises:
            InvalidArgument: a bad definition (nothing is written): an invalid
                cron expression, an unknown time zone, both or neither of cron
                and every, every under 1 s, an unknown spawn option, a name
                already scheduled, or a task no handler of this app registers
                yet (schedule after the `@app.task` handler, or register a
                catch-all; workers check again at start, before writing).
        """
        from . import schedules

        schedule = schedules.define(
            name,
            task_name,
            cron=cron,
            every=every,
            params=params,
            timezone=timezone,
            overlap=overlap,
            catch_up=catch_up,
            max_catch_up=max_catch_up,
            jitter=jitter,
            start_at=start_at,
            end_at=end_at,
            queue=queue,
            **spawn_options,
        )
        if self.handler_for(schedule.task_name) is None:
            raise InvalidArgument(
                f"schedule {schedule.name!r} names task {schedule.task_name!r}, which no handler of this "
                "app registers (define the schedule after the handler)"
            )
        # set here rather than in __init__: an app without schedules carries nothing
        registry = self.__dict__.setdefault("_schedules", {})
        if schedule.name in registry:
            raise InvalidArgument(f"schedule {schedule.name!r} is already defined on this app")
        registry[schedule.name] = schedule
        return schedule

    @property
    def schedules(self) -> dict[str, Schedule]:
        """The schedules defined with `schedule()`, by name (a copy)."""
        return dict(self.__dict__.get("_schedules", {}))

    def check_schedules(self) -> None:
        """Raise `InvalidArgument` when a schedule names a task no handler of this app registers.

        Workers call it at start, before writing any schedule (`app.schedule()`
        checks at the call too; this catches a handler removed since).
        """
        for schedule in self.schedules.values():
            if self.handler_for(schedule.task_name) is None:
                raise InvalidArgument(
                    f"schedule {schedule.name!r} names task {schedule.task_name!r}, "
                    "which no handler of this app registers"
                )
