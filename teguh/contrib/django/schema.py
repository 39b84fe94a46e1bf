"""Installing and upgrading the teguh schema from `manage.py migrate`."""

from __future__ import annotations

import logging
from typing import Any

from teguh import _sql
from teguh.client import install, schema_sql

from . import conf

logger = logging.getLogger("teguh.django")


def sync_schema(connection: Any) -> None:
    """Install or upgrade the teguh schema and create the configured queues.

    Runs on `connection` (a Django connection, so inside the migration's
    transaction) when teguh lives in that database; with `TEGUH['DSN']` set it
    installs there instead, on teguh's own connection. Idempotent: keeps data.

    Raises:
        CommandError: teguh's database alias is not PostgreSQL (one line).
    """
    if not conf.shares_django_database():
        from ._app import get_app

        client = get_app().client
        install(client)
        for name in conf.queues():
            client.create_queue(name)
        return
    if connection.alias != conf.database_alias():
        return
    if connection.vendor != "postgresql":
        # One line on `migrate` (manage.py prints a CommandError without a
        # traceback), instead of SQLite's "no such function: pg_advisory_xact_lock".
        from django.core.management.base import CommandError

        from .checks import non_postgresql_message

        engine = connection.settings_dict.get("ENGINE", "")
        raise CommandError(f"{non_postgresql_message(connection.alias, engine)}: see `manage.py check`")
    with connection.cursor() as cur:
        # no parameters: the driver sends the file as it is (its % signs included)
        cur.execute(schema_sql())
        for name in conf.queues():
            cur.execute(_sql.CREATE_QUEUE, [name])
    logger.info(
        "teguh schema installed in database %r (queues: %s)", connection.alias, ", ".join(conf.queues())
    )


def install_schema(apps: Any, schema_editor: Any) -> None:
    """RunPython forward code of migration 0001."""
    sync_schema(schema_editor.connection)


def sync_after_migrate(sender: Any, using: str, plan: Any = None, **kwargs: Any) -> None:
    """`post_migrate`: re-apply the schema on every `migrate`, so upgrading teguh upgrades it.

    Migrations run once, but the schema file changes with each teguh release
    and is safe to re-apply; skipped when this `migrate` just ran 0001.
    """
    from django.db import connections, transaction

    for migration, backwards in plan or []:
        if migration.app_label == "teguh" and migration.name == "0001_initial" and not backwards:
            return
    if using != conf.database_alias():
        return
    connection = connections[using]
    if not _migration_applied(connection):
        return  # `migrate teguh zero` or never migrated: leave the database as it is
    with transaction.atomic(using=using):
        sync_schema(connection)


def _migration_applied(connection: Any) -> bool:
    from django.db.migrations.recorder import MigrationRecorder

    recorder = MigrationRecorder(connection)
    return recorder.has_table() and ("teguh", "0001_initial") in recorder.applied_migrations()
