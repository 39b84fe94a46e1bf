"""An unmanaged model over the tasks table of the configured queue (`teguh.t_<QUEUE>`), for the admin."""

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
    """A teguh task (read-only: the engine owns the table; change tasks through the client)."""

    task_id = models.UUIDField(primary_key=True)
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
        # computed from settings here and in migration 0001 alike, so changing
        # TEGUH["QUEUE"] never produces a migration
        db_table = conf.task_table()
        # task ids are UUIDv7: newest first, served by the primary key index
        ordering = ["-task_id"]  # noqa: RUF012 (Django's Meta convention)

    def __str__(self) -> str:
        return f"{self.task_name} {self.task_id}"
