from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies: list = []  # noqa: RUF012 (Django's migration convention)

    operations = [  # noqa: RUF012
        migrations.CreateModel(
            name="Note",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("text", models.TextField()),
                ("processed_by_task", models.TextField(blank=True, default="")),
            ],
        ),
    ]
