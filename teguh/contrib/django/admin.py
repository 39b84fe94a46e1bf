"""A read-only admin over the tasks of every queue, with a queue filter and retry and cancel actions.

It reads the engine's view `teguh.tasks` through Django's connection and
changes nothing itself: the actions go through `teguh.Client`. An action on a
task that cannot take it (a retry of a pending task, an unknown id) is
reported as a warning, per task, and the others still run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db import connections
from django.db.models import QuerySet
from django.http import HttpRequest

from teguh.errors import TeguhError

from ... import _sql
from . import conf
from .models import Task

FINISHED = ("completed", "failed", "cancelled")


class QueueFilter(admin.SimpleListFilter):
    """Filter by queue; the choices are the queues that exist (`teguh.queues`), not a scan of the tasks."""

    title = "queue"
    parameter_name = "queue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        with connections[conf.database_alias()].cursor() as cur:
            cur.execute(_sql.LIST_QUEUES)
            return sorted((row[0], row[0]) for row in cur.fetchall())

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset.filter(queue_name=value) if value else queryset


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    """Lists tasks newest first; retry and cancel go through `teguh.Client` (never a direct write)."""

    list_display = (
        "task_id",
        "queue_name",
        "task_name",
        "state",
        "attempts",
        "priority",
        "enqueued_at",
        "first_started_at",
        "finished_at",
        "failure",
    )
    list_filter = (QueueFilter, "state")
    search_fields = ("task_name", "idempotency_key")
    # a count(*) over a long history is slow; the pager does without it
    show_full_result_count = False
    actions = ("retry_tasks", "cancel_tasks")

    @admin.display(description="last failure")
    def failure(self, obj: Task) -> str:
        reason = obj.failure_reason if isinstance(obj.failure_reason, dict) else {}
        text = f"{reason.get('type', '')}: {reason.get('message', '')}" if reason else ""
        return text[:200]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).using(conf.database_alias())

    # The engine owns the rows: the admin shows them and acts through the client.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_act_permission(self, request: HttpRequest) -> bool:
        """Retry and cancel need the `teguh.change_task` permission."""
        return request.user.has_perm("teguh.change_task")

    def _act(
        self, request: HttpRequest, queryset: QuerySet, call: Callable[[Any, str, str], bool]
    ) -> tuple[int, int]:
        """Calls `call(client, queue, task_id)` per task: (how many changed, how many were left as they were).

        Refusals (TeguhError) are reported as warnings and counted in neither.
        """
        from ._app import get_app

        client = get_app().client
        changed, unchanged = 0, 0
        for queue, task_id in queryset.values_list("queue_name", "task_id"):
            try:
                if call(client, queue, str(task_id)):
                    changed += 1
                else:
                    unchanged += 1
            except TeguhError as exc:
                self.message_user(request, f"{task_id}: {exc}", messages.WARNING)
        return changed, unchanged

    @admin.action(description="Retry selected failed or cancelled tasks", permissions=["act"])
    def retry_tasks(self, request: HttpRequest, queryset: QuerySet) -> None:
        def retry(client: Any, queue: str, task_id: str) -> bool:
            client.retry_task(queue, task_id)  # refuses (raises) unless failed or cancelled
            return True

        done, _ = self._act(request, queryset, retry)
        if done:
            self.message_user(request, f"{done} task(s) retried.", messages.SUCCESS)

    @admin.action(description="Cancel selected unfinished tasks", permissions=["act"])
    def cancel_tasks(self, request: HttpRequest, queryset: QuerySet) -> None:
        def cancel(client: Any, queue: str, task_id: str) -> bool:
            # cancel_task leaves a finished task as it is and says nothing:
            # compare the state before and after, in one transaction
            with client.transaction() as conn:
                before = client.get_task_result(queue, task_id, conn=conn).state
                if before in FINISHED:
                    return False
                client.cancel_task(queue, task_id, conn=conn)
                return client.get_task_result(queue, task_id, conn=conn).state == "cancelled"

        cancelled, finished = self._act(request, queryset, cancel)
        parts = [f"{cancelled} task(s) cancelled"] if cancelled else []
        if finished:
            parts.append(f"{finished} already finished (left as they were)")
        if parts:
            level = messages.SUCCESS if cancelled else messages.WARNING
            self.message_user(request, "; ".join(parts) + ".", level)
