"""The project's `teguh.App`, and spawning on Django's own database connection."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from django.db import close_old_connections, connections, transaction

from teguh._drivers import is_driver_error
from teguh.app import App
from teguh.errors import TeguhError, map_db_error
from teguh.worker import Worker

from . import conf
from .conf import DJANGO_TASK_PREFIX  # its home; importable from here as before

if TYPE_CHECKING:
    from teguh.app import Task
    from teguh.client import Client
    from teguh.context import TaskContext
    from teguh.results import SpawnResult

logger = logging.getLogger("teguh.django")

@contextlib.contextmanager
def django_connections(ctx: TaskContext) -> Iterator[None]:
    """Close Django connections that are broken or past `CONN_MAX_AGE`, before and after a run.

    This is what Django does around every request (`request_started` and
    `request_finished`); a long-lived worker needs the same, or a database
    restart leaves its threads holding dead connections forever. Skipped when
    the handler runs inside an `atomic()` block of its thread (inline, in tests).
    """
    if any(conn.in_atomic_block for conn in connections.all(initialized_only=True)):
        # run inline inside the caller's transaction (teguh.testing's eager mode):
        # closing "obsolete" connections here would break that transaction
        yield
        return
    close_old_connections()
    try:
        yield
    finally:
        close_old_connections()
        # persistent connections (CONN_MAX_AGE > 0) outlive the run: remember those of
        # handler threads, so the worker closes them when it stops instead of leaking them
        if threading.current_thread() is not threading.main_thread():
            kept = [c for c in connections.all(initialized_only=True) if c.connection is not None]
            if kept:
                with _kept_lock:
                    _kept.setdefault(ctx.queue, set()).update(kept)


async def _awaited(coro: Coroutine[Any, Any, Any]) -> Any:
    """`async_to_sync` takes an async function: this one awaits an existing coroutine."""
    return await coro


_kept: dict[str, set[Any]] = {}
_kept_lock = threading.Lock()


def close_kept_connections(queue: str) -> None:
    """Close the Django connections that runs on `queue` left open (the worker has stopped).

    Each belongs to a handler thread that has ended, so closing it from this
    thread is safe; Django's thread check is lifted for the call.
    """
    with _kept_lock:
        kept = _kept.pop(queue, set())
    for conn in kept:
        conn.inc_thread_sharing()
        try:
            conn.close()
        except Exception:  # a dead connection: nothing left to close
            logger.debug("closing a Django connection of queue %s failed", queue, exc_info=True)
        finally:
            conn.dec_thread_sharing()


class DjangoWorker(Worker):
    """A `Worker` that closes the Django connections its handler threads kept, when it stops."""

    def run(self) -> None:
        """Run as `Worker.run`, then close the handler threads' persistent Django connections."""
        try:
            super().run()
        finally:
            if not self.stuck_handlers:  # a stuck handler may still be using its connection
                close_kept_connections(self.queue)


class DjangoApp(App):
    """A `teguh.App` configured from Django settings.

    Differences from `App`: the DSN comes from `TEGUH`/`DATABASES` when the
    client is first used; `spawn_task` (and so every task's `.spawn()`) runs on
    Django's connection, inside the current `transaction.atomic()` block when
    there is one; each run is wrapped in `close_old_connections()`; async
    handlers run through asgiref (see `run_coroutine`); and task
    names spawned by the `django.tasks` backend are resolved by importing the
    task function.
    """

    def __init__(self, *, queue: str | None = None) -> None:
        super().__init__(queue=queue or conf.queue())
        self._resolve_lock = threading.Lock()
        self.around_run(django_connections)

    def run_coroutine(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run an async handler through asgiref's `async_to_sync`, as Django runs async code from sync code.

        Its loop then runs in a helper thread while this handler thread serves
        the `sync_to_async` calls the ORM's async API makes (thread-sensitive
        ones), so those use this thread's connections: the ones the
        `close_old_connections()` hook manages, and, in eager mode, the
        caller's transaction. Without it they would run in asgiref's one
        process-wide thread, shared by every handler thread and never cleaned.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return async_to_sync(_awaited)(coro)
        # an async caller (eager mode in an async test): async_to_sync refuses its thread
        return super().run_coroutine(coro)

    @property
    def client(self) -> Client:
        """The app's `Client`, on `conf.dsn()` (created on first use)."""
        with self._client_lock:
            if self._client is None:
                from teguh.client import Client

                self._client = Client(conf.dsn(), application_name="teguh-django")
            return self._client

    def spawn_task(
        self,
        task_name: str,
        params: Any = None,
        *,
        queue: str | None = None,
        conn: Any = None,
        using: str | None = None,
        **options: Any,
    ) -> SpawnResult:
        """Spawn `task_name`; by default on Django's connection, in its transaction.

        Inside `transaction.atomic()` the task commits or rolls back with the
        block; outside one (Django's autocommit) it commits at once. `using`
        picks the Django database alias (default `TEGUH['DATABASE']`); `conn=`
        (a psycopg2 or psycopg 3 connection) bypasses Django. With `TEGUH['DSN']` set or
        `TRANSACTIONAL_SPAWN` off, the spawn runs on teguh's own pool and
        commits at once.
        """
        if conn is not None or not (conf.shares_django_database() and conf.setting("TRANSACTIONAL_SPAWN")):
            return super().spawn_task(task_name, params, queue=queue, conn=conn, **options)
        spawn = super().spawn_task
        return on_django_connection(
            lambda raw: spawn(task_name, params, queue=queue, conn=raw, **options), using=using
        )

    def handler_for(self, task_name: str) -> Task | None:
        """The handler of `task_name`; `django.tasks` functions are imported on first sight."""
        task = self._tasks.get(task_name)
        if task is None and task_name.startswith(DJANGO_TASK_PREFIX):
            # lazily: `_tasks` needs django.tasks (or the backport), which the app does not
            from ._tasks import register_django_task

            with self._resolve_lock:
                task = self._tasks.get(task_name) or register_django_task(self, task_name)
        return task or super().handler_for(task_name)

    def worker(
        self, queue: str | None = None, *, queues: Sequence[str] | None = None, **options: Any
    ) -> Worker:
        """Build a `Worker` (see `App.worker`); `TEGUH['WORKER']` supplies defaults."""
        accepted = inspect.signature(Worker).parameters
        # TEGUH["WORKER"] may also hold CLI-only keys (log_level, log_format);
        # a queue there is `manage.py teguh worker`'s default, not an option here
        defaults = {
            key: value
            for key, value in conf.worker_defaults().items()
            if key in accepted and key not in ("app", "queue", "queues")
        }
        queue, queues = self._worker_queues(queue, queues)
        return DjangoWorker(self, queue, queues=queues, **{**defaults, **options})


def on_django_connection(call: Callable[[Any], Any], *, using: str | None = None) -> Any:
    """Run `call(raw_connection)` inside `transaction.atomic(using)` on Django's connection.

    The atomic block makes Django's transaction state the truth: nested in the
    caller's `atomic()` it is a savepoint (so a failed call can be caught
    without poisoning the outer transaction), and outside one it is a
    transaction of its own that commits on return. Both psycopg2 and psycopg 3
    backends work: the client runs its calls on either (see `teguh._drivers`).
    """
    alias = using or conf.database_alias()
    connection = connections[alias]
    with transaction.atomic(using=alias):
        connection.ensure_connection()
        raw = connection.connection
        try:
            return call(raw)
        except Exception as exc:
            mapped = _map_driver_error(exc)
            if mapped is exc:
                raise
            raise mapped from exc


def _map_driver_error(exc: Exception) -> BaseException:
    """Map a database error that escaped the client's own mapping to teguh's exceptions.

    The client maps the errors of its calls on either driver; this catches a
    raw psycopg2 or psycopg 3 error raised around them. Django's own wrapped
    errors (`django.db.utils`) and teguh's are returned as they are.
    """
    if isinstance(exc, TeguhError) or not is_driver_error(exc):
        return exc
    return map_db_error(exc)


_app: DjangoApp | None = None
_app_lock = threading.Lock()


def get_app() -> DjangoApp:
    """The project's `teguh.App` (one per process), configured from Django settings."""
    global _app
    with _app_lock:
        if _app is None:
            _app = DjangoApp()
        return _app


def spawn_task(task_name: str, params: Any = None, **options: Any) -> SpawnResult:
    """`get_app().spawn_task(...)`: spawn on Django's connection, inside its transaction."""
    return get_app().spawn_task(task_name, params, **options)
