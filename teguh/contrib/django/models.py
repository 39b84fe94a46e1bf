"""An unmanaged model over the view `teguh.tasks` (every queue's tasks), for the admin."""

from __future__ import annotations

from django.db import models

from . import conf

STATES = [
    ("pending", "pending"),
    ("running", "running"),
    ("sleeping", "sleeping"),
    ("completed", "completed"),
    ("failed", "failed"),
    ("cancelled", "cancelled"),
]


class Task(models.Model):
    """A teguh task of any queue (read-only: the engine owns the tables; change tasks through the client)."""

    task_id = models.UUIDField(primary_key=True)
    queue_name = models.TextField()
    task_name = models.TextField()
    params = models.JSONField()
    headers = models.JSONField(null=True)
    retry_strategy = models.JSONField(null=True)
    max_attempts = models.IntegerField(null=True)
    cancellation = models.JSONField(null=True)
    idempotency_key = models.TextField(null=True)
    priority = models.IntegerField()
    state = models.TextField(choices=STATES)
    attempts = models.IntegerField()
    enqueued_at = models.DateTimeField()
    first_started_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)
    available_at = models.DateTimeField(null=True)
    wake_event = models.TextField(null=True)
    last_run_id = models.UUIDField(null=True)
    result = models.JSONField(null=True)
    failure_reason = models.JSONField(null=True)
    cancelled_at = models.DateTimeField(null=True)
    notify_done = models.BooleanField()
    deadline_at = models.DateTimeField(null=True)

    class Meta:
        managed = False
        # the engine's view over every queue's t_ table (see teguh.sql); the
        # quotes make Django emit "teguh"."tasks", a schema-qualified name
        db_table = conf.TASKS_VIEW
        # task ids are UUIDv7: newest first, served by the primary key index
        ordering = ["-task_id"]  # noqa: RUF012 (Django's Meta convention)

    def __str__(self) -> str:
        return f"{self.task_name} {self.task_id}"
