"""The `django.tasks` side of the integration: the import shim and the worker-side bridge.

`django.tasks` is Django 6's; on Django 5.x the `django-tasks` backport
provides the same names. Importing this module raises `ImportError` when
neither is installed: only `TeguhBackend` and the worker's resolution of
`django.tasks:<path>` task names need it, so `_app.py` imports it lazily.

The bridge runs a `django.tasks` function for teguh's worker: the task name
`django.tasks:<module path>` is resolved by importing the path on first
sight (`register_django_task`), and each run sends Django's task signals
around the call (`_call`). This module imports neither `_app` nor `backend`.
"""

from __future__ import annotations

import logging
import traceback
from typing import TYPE_CHECKING, Any

from django.utils import timezone
from django.utils.module_loading import import_string

from .conf import DJANGO_TASK_PREFIX

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

if TYPE_CHECKING:
    from teguh.app import App

__all__ = [
    "DJANGO_TASK_PREFIX",
    "BaseTaskBackend",
    "DjangoTask",
    "InvalidTaskError",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "TeguhTaskContext",
    "register_django_task",
    "task_enqueued",
    "task_finished",
    "task_started",
]

logger = logging.getLogger("teguh.django")


def register_django_task(app: App, task_name: str) -> Any:
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
