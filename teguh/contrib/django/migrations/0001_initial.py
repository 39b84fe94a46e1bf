"""Installs the teguh schema (re-runnable; reversal drops nothing) and declares the admin's unmanaged model.

Later `migrate` runs re-apply the schema (see `schema.sync_after_migrate`), so
a teguh upgrade needs no new migration here.
"""

from django.db import migrations, models

from teguh.contrib.django import conf
from teguh.contrib.django.models import STATES
from teguh.contrib.django.schema import install_schema


class Migration(migrations.Migration):
    initial = True

    dependencies: list = []  # noqa: RUF012 (Django's migration convention)

    operations = [  # noqa: RUF012
        migrations.RunPython(install_schema, migrations.RunPython.noop, elidable=False),
        migrations.CreateModel(
            name="Task",
            fields=[
                ("task_id", models.UUIDField(primary_key=True, serialize=False)),
                ("task_name", models.TextField()),
                ("params", models.JSONField()),
                ("headers", models.JSONField(null=True)),
                ("retry_strategy", models.JSONField(null=True)),
                ("max_attempts", models.IntegerField(null=True)),
                ("cancellation", models.JSONField(null=True)),
                ("idempotency_key", models.TextField(null=True)),
                ("priority", models.IntegerField()),
                ("state", models.TextField(choices=STATES)),
                ("attempts", models.IntegerField()),
                ("enqueued_at", models.DateTimeField()),
                ("first_started_at", models.DateTimeField(null=True)),
                ("finished_at", models.DateTimeField(null=True)),
                ("available_at", models.DateTimeField(null=True)),
                ("wake_event", models.TextField(null=True)),
                ("last_run_id", models.UUIDField(null=True)),
                ("result", models.JSONField(null=True)),
                ("failure_reason", models.JSONField(null=True)),
                ("cancelled_at", models.DateTimeField(null=True)),
                ("notify_done", models.BooleanField()),
                ("deadline_at", models.DateTimeField(null=True)),
            ],
            options={
                "managed": False,
                "db_table": conf.task_table(),
                "ordering": ["-task_id"],
            },
        ),
    ]
