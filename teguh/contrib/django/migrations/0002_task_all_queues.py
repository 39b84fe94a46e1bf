"""The admin's `Task` model reads the view `teguh.tasks` (every queue) and gains `queue_name`.

Both changes are to an unmanaged model, so nothing runs here: the view comes
with the schema, which `migrate` re-applies after this migration (see
`schema.sync_after_migrate`).
"""

from django.db import migrations, models

from teguh.contrib.django import conf


class Migration(migrations.Migration):
    dependencies = [("teguh", "0001_initial")]  # noqa: RUF012 (Django's migration convention)

    operations = [  # noqa: RUF012
        migrations.AlterModelTable(name="task", table=conf.TASKS_VIEW),
        migrations.AddField(
            model_name="task", name="queue_name", field=models.TextField(default=""), preserve_default=False
        ),
    ]
