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

from typing import Any

from django.utils import timezone
from django.utils.module_loading import import_string

from teguh import _validate
from teguh.retry import normalize_retry_strategy

from ._app import get_app
from ._tasks import (
    DJANGO_TASK_PREFIX,
    BaseTaskBackend,
    DjangoTask,
    InvalidTaskError,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    TeguhTaskContext,
    _call,  # noqa: F401 (the old import path)
    register_django_task,
    task_enqueued,
)

# `register_django_task`, `_call` and `TeguhTaskContext` live in `_tasks.py`
# (so `_app.py` no longer imports this module); imported here for the old paths.
__all__ = ["DEFAULT_MAX_ATTEMPTS", "STATUS", "TeguhBackend", "TeguhTaskContext", "register_django_task"]

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
    """The task's row with its lease (`teguh.get_task_info`) via teguh's pool; None: no such task or queue."""
    return get_app().client._get_task_info(queue, task_id)
