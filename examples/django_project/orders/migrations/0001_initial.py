from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies: list = []  # noqa: RUF012

    operations = [  # noqa: RUF012
        migrations.CreateModel(
            name="Order",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("item", models.TextField()),
                ("status", models.TextField(default="placed")),
                ("task_id", models.TextField(blank=True, default="")),
            ],
        ),
    ]
