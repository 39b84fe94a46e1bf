"""`TeguhBackend`: a `django.tasks` backend (Django 6+, or the `django-tasks` backport).

```python
TASKS = {
    "default": {
        "BACKEND": "teguh.contrib.django.TeguhBackend",
        "QUEUES": ["default"],
        "OPTIONS": {"MAX_ATTEMPTS": 3, "RETRY_STRATEGY": {"kind": "exponential", "base_seconds": 5}},
    }
}
```

A task is spawned as `django.tasks:<module path of the function>` with params
`{"args": [...], "kwargs": {...}}`, on the teguh queue named by the task's
`queue_name`, inside the caller's transaction (like `spawn_task`). `priority`
(-100..100) is teguh's priority unchanged (higher first), `run_after` its
`available_at`. The worker (`manage.py teguh worker`) imports the function by
its path on first sight, so tasks need no other registration.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from django.utils import timezone
from django.utils.module_loading import import_string

from teguh import _validate
from teguh.retry import normalize_retry_strategy

from ._app import DJANGO_TASK_PREFIX, DjangoApp, get_app

try:  # Django 6.0+
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import Task as DjangoTask
    from django.tasks.base import TaskContext, TaskError, TaskResult, TaskResultStatus
    from django.tasks.exceptions import InvalidTask as InvalidTaskError
    from django.tasks.exceptions import TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
except ImportError:  # the django-tasks backport (Django 5.x)
    from django_tasks.backends.base import BaseTaskBackend  # type: ignore[no-redef]
    from django_tasks.base import Task as DjangoTask  # type: ignore[no-redef]
    from django_tasks.base import (  # type: ignore[no-redef]
        TaskContext,
        TaskError,
        TaskResult,
        TaskResultStatus,
    )
    from django_tasks.exceptions import (  # type: ignore[no-redef]
        InvalidTaskError,
        TaskResultDoesNotExist,
    )
    from django_tasks.signals import (  # type: ignore[no-redef]
        task_enqueued,
        task_finished,
        task_started,
    )

logger = logging.getLogger("teguh.django")

DEFAULT_MAX_ATTEMPTS = 3
"""Attempts a `django.tasks` task gets unless `OPTIONS["MAX_ATTEMPTS"]` says otherwise."""

STATUS = {
    "pending": TaskResultStatus.READY,
    "running": TaskResultStatus.RUNNING,
    # suspended mid-work: a durable sleep, an event wait, or the backoff before a retry
    "sleeping": TaskResultStatus.RUNNING,
    "completed": TaskResultStatus.SUCCESSFUL,
    "failed": TaskResultStatus.FAILED,
    # django.tasks has no cancelled status: a cancelled task failed to finish
    "cancelled": TaskResultStatus.FAILED,
}
"""teguh task states to `TaskResultStatus`."""


class TeguhBackend(BaseTaskBackend):
    """Enqueues `django.tasks` tasks as teguh tasks; results come from teguh's tasks table.

    OPTIONS: `MAX_ATTEMPTS` (default 3; None: unlimited), `RETRY_STRATEGY` (a
    dict as `Client.spawn_task` takes; default: the worker's backoff),
    `DATABASE` (the Django alias to spawn on; default `TEGUH["DATABASE"]`).
    """

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict) -> None:
        super().__init__(alias, params)
        self.max_attempts = self.options.get("MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS)
        self.retry_strategy = normalize_retry_strategy(self.options.get("RETRY_STRATEGY"))
        self.database = self.options.get("DATABASE")

    def validate_task(self, task: DjangoTask) -> None:
        """Django's checks, plus: the queue name must be a valid teguh queue name."""
        super().validate_task(task)
        try:
            _validate.queue_name(task.queue_name)
        except ValueError as exc:
            raise InvalidTaskError(f"queue_name {task.queue_name!r}: {exc}") from None

    def enqueue(self, task: DjangoTask, args: Any, kwargs: Any) -> TaskResult:
        """Spawn the task (inside the current transaction, if any) and return its READY result."""
        self.validate_task(task)
        options: dict[str, Any] = {"priority": int(task.priority)}
        if self.max_attempts is not None:
            options["max_attempts"] = self.max_attempts
        if self.retry_strategy is not None:
            options["retry_strategy"] = self.retry_strategy
        if task.run_after is not None:
            run_after = task.run_after
            if timezone.is_naive(run_after):  # allowed by Django only with USE_TZ = False
                run_after = timezone.make_aware(run_after)
            options["available_at"] = run_after
        params = {"args": list(args), "kwargs": dict(kwargs)}
        name = DJANGO_TASK_PREFIX + task.module_path
        spawned = get_app().spawn_task(name, params, queue=task.queue_name, using=self.database, **options)
        result = TaskResult(
            task=task,
            id=spawned.task_id,
            status=TaskResultStatus.READY,
            enqueued_at=timezone.now(),
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=params["args"],
            kwargs=params["kwargs"],
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult:
        """The task's current result, looked up in each of the backend's queues.

        Raises:
            TaskResultDoesNotExist: no such task (or its function cannot be imported).
        """
        try:
            task_id = _validate.task_uuid(result_id, "result_id")
        except (TypeError, ValueError):
            raise TaskResultDoesNotExist(result_id) from None
        for queue in sorted(self.queues):
            row = _fetch_task(queue, task_id)
            if row is not None:
                return self._result(queue, task_id, row)
        raise TaskResultDoesNotExist(result_id)

    def _result(self, queue: str, task_id: str, row: dict[str, Any]) -> TaskResult:
        name = row["task_name"]
        if not name.startswith(DJANGO_TASK_PREFIX):
            raise TaskResultDoesNotExist(f"{task_id} is teguh task {name!r}, not a django.tasks task")
        try:
            task = import_string(name[len(DJANGO_TASK_PREFIX) :])
        except ImportError as exc:
            raise TaskResultDoesNotExist(f"{task_id}: cannot import {name!r}: {exc}") from None
        if not isinstance(task, DjangoTask):
            raise TaskResultDoesNotExist(f"{task_id}: {name!r} is not a django.tasks task")
        task = task.using(priority=row["priority"], queue_name=queue, backend=self.alias)
        status = STATUS[row["state"]]
        attempts = row["attempts"] if row["first_started_at"] is not None else 0
        # teguh keeps the current lease holder only, not one id per attempt
        worker_ids = [""] * attempts
        if worker_ids and row["claimed_by"]:
            worker_ids[-1] = row["claimed_by"]
        params = row["params"] or {}
        result = TaskResult(
            task=task,
            id=task_id,
            status=status,
            enqueued_at=row["enqueued_at"],
            started_at=row["first_started_at"],
            finished_at=row["finished_at"] if status in (STATUS["completed"], STATUS["failed"]) else None,
            last_attempted_at=row["claimed_at"] or row["finished_at"] or row["first_started_at"],
            args=params.get("args", []),
            kwargs=params.get("kwargs", {}),
            backend=self.alias,
            errors=_errors(row),
            worker_ids=worker_ids,
        )
        if status == TaskResultStatus.SUCCESSFUL:
            object.__setattr__(result, "_return_value", row["result"])
        return result


def _errors(row: dict[str, Any]) -> list[TaskError]:
    """The last failure as a `TaskError` (teguh keeps the last one only), or the cancellation."""
    if row["state"] == "cancelled":
        return [TaskError(exception_class_path="teguh.errors.Cancelled", traceback="the task was cancelled")]
    reason = row["failure_reason"]
    if not isinstance(reason, dict) or row["state"] not in ("failed", "sleeping", "pending", "running"):
        return []
    kind = reason.get("type") or "Exception"
    module = reason.get("module") or "builtins"
    return [
        TaskError(
            exception_class_path=f"{module}.{kind}",
            traceback=reason.get("traceback") or f"{kind}: {reason.get('message', '')}",
        )
    ]


def _fetch_task(queue: str, task_id: str) -> dict[str, Any] | None:
    """One row of `teguh.t_<queue>` with its lease, through teguh's pool (None: no such task or queue)."""
    from psycopg2 import sql

    query = sql.SQL(
        "select t.task_name, t.params, t.state, t.attempts, t.priority, t.enqueued_at, "
        "t.first_started_at, t.finished_at, t.result, t.failure_reason, r.claimed_by, r.claimed_at "
        "from teguh.{t} t left join teguh.{r} r on r.task_id = t.task_id where t.task_id = %s::uuid"
    ).format(t=sql.Identifier(f"t_{queue}"), r=sql.Identifier(f"r_{queue}"))

    def fetch(cur: Any) -> dict[str, Any] | None:
        cur.execute("select to_regclass(%s)", (f'teguh."t_{queue}"',))
        if cur.fetchone()[0] is None:
            return None
        cur.execute(query, (task_id,))
        row = cur.fetchone()
        return None if row is None else dict(zip([c.name for c in cur.description], row, strict=True))

    return get_app().client._run("get_result", fetch, retry=True, queue=queue, task_id=task_id)


def register_django_task(app: DjangoApp, task_name: str) -> Any:
    """Register a handler for `django.tasks:<path>` that imports and calls the function (worker side).

    Returns the teguh `Task`, or None when the path does not name a
    `django.tasks` task (the worker then treats the name as unknown).
    """
    path = task_name[len(DJANGO_TASK_PREFIX) :]
    try:
        django_task = import_string(path)
    except ImportError as exc:
        logger.warning("cannot import django.tasks task %r: %s", path, exc)
        return None
    if not isinstance(django_task, DjangoTask):
        logger.warning("%r is not a django.tasks task; not running it", path)
        return None

    def run(params: Any, ctx: Any) -> Any:
        return _call(django_task, params or {}, ctx)

    run.__name__ = run.__qualname__ = path
    return app.task(task_name)(run)


def _call(django_task: DjangoTask, params: dict[str, Any], ctx: Any) -> Any:
    """Run a `django.tasks` function for teguh's worker, sending Django's task signals around it."""
    args, kwargs = params.get("args", []), params.get("kwargs", {})
    now = timezone.now()
    task_result = TaskResult(
        task=django_task,
        id=ctx.task_id,
        status=TaskResultStatus.RUNNING,
        enqueued_at=None,
        started_at=now,
        finished_at=None,
        last_attempted_at=now,
        args=args,
        kwargs=kwargs,
        backend=django_task.backend,
        errors=[],
        worker_ids=[""] * ctx.attempt,  # so context.attempt is teguh's attempt number
    )
    sender = type(django_task.get_backend())
    task_started.send(sender, task_result=task_result)
    try:
        if django_task.takes_context:
            context = TeguhTaskContext(task_result=task_result)
            object.__setattr__(context, "teguh", ctx)  # frozen dataclass: set once, here
            value = django_task.call(context, *args, **kwargs)
        else:
            value = django_task.call(*args, **kwargs)
    except Exception as exc:  # not Suspended/Cancelled/LeaseLost: those are no outcome yet
        object.__setattr__(task_result, "status", TaskResultStatus.FAILED)
        object.__setattr__(task_result, "finished_at", timezone.now())
        task_result.errors.append(
            TaskError(
                exception_class_path=f"{type(exc).__module__}.{type(exc).__qualname__}",
                traceback="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
            )
        )
        task_finished.send(sender, task_result=task_result)  # this attempt; teguh may retry
        raise
    object.__setattr__(task_result, "status", TaskResultStatus.SUCCESSFUL)
    object.__setattr__(task_result, "finished_at", timezone.now())
    object.__setattr__(task_result, "_return_value", value)
    task_finished.send(sender, task_result=task_result)
    return value


class TeguhTaskContext(TaskContext):
    """The `django.tasks` context TeguhBackend passes, plus `.teguh`: teguh's durable context.

    `context.teguh.step(...)`, `.sleep_for(...)`, `.await_event(...)` make a
    `django.tasks` task durable like any teguh handler. Not slotted (unlike
    its base), so it can carry the extra attribute.
    """

    teguh: Any
