"""A read-only admin over the tasks of the configured queue, with retry and cancel actions."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from teguh.errors import TeguhError

from . import conf
from .models import Task


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    """Lists tasks newest first; retry and cancel go through `teguh.Client` (never a direct write)."""

    list_display = (
        "task_id",
        "task_name",
        "state",
        "attempts",
        "priority",
        "enqueued_at",
        "first_started_at",
        "finished_at",
        "failure",
    )
    list_filter = ("state",)
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

    def _act(self, request: HttpRequest, queryset: QuerySet, verb: str, call: Any) -> None:
        from ._app import get_app

        client = get_app().client
        done, refused = 0, []
        for task_id in queryset.values_list("task_id", flat=True):
            try:
                call(client, conf.queue(), str(task_id))
                done += 1
            except TeguhError as exc:
                refused.append(f"{task_id}: {exc}")
        if done:
            self.message_user(request, f"{done} task(s) {verb}.", messages.SUCCESS)
        for line in refused:
            self.message_user(request, line, messages.WARNING)

    @admin.action(description="Retry selected failed or cancelled tasks", permissions=["act"])
    def retry_tasks(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._act(request, queryset, "retried", lambda c, q, t: c.retry_task(q, t))

    @admin.action(description="Cancel selected unfinished tasks", permissions=["act"])
    def cancel_tasks(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._act(request, queryset, "cancelled", lambda c, q, t: c.cancel_task(q, t))
