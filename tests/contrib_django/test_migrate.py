"""`manage.py migrate` installs the teguh schema; re-running it is safe and needs no new migration."""

from __future__ import annotations

import io

import psycopg2.extensions
from django.core.management import call_command

from .conftest import _point_django_at
from .helpers import query


def test_migrate_installs_schema_and_queues_into_an_empty_database(django_project, empty_dsn: str) -> None:
    assert query(empty_dsn, "select to_regclass('teguh.queues')") == [(None,)]
    _point_django_at(psycopg2.extensions.parse_dsn(empty_dsn)["dbname"])
    try:
        call_command("migrate", verbosity=0)
        assert query(empty_dsn, "select teguh.version() is not null") == [(True,)]
        assert query(empty_dsn, "select queue_name from teguh.list_queues()") == [("default",), ("other",)]
        applied = "select app, name from django_migrations where app = 'teguh' order by name"
        assert query(empty_dsn, applied) == [
            ("teguh", "0001_initial"),
            ("teguh", "0002_task_all_queues"),
        ]
        assert query(empty_dsn, "select count(*) from teguh.tasks") == [(0,)]  # the admin's view

        # a second migrate re-applies the schema (post_migrate) and keeps data
        query(empty_dsn, "select teguh.spawn_task('default', 'kept', '{}'::jsonb)")
        query(empty_dsn, "drop function teguh.list_queues()")  # as if an older release lacked it
        call_command("migrate", verbosity=0)
        assert query(empty_dsn, "select count(*) from teguh.t_default") == [(1,)]
        assert query(empty_dsn, "select count(*) from teguh.list_queues()") == [(2,)]

        # the unmanaged admin model matches its migration
        out = io.StringIO()
        call_command("makemigrations", "teguh", check=True, dry_run=True, stdout=out)
        assert "No changes detected" in out.getvalue()

        # reversing drops nothing
        call_command("migrate", "teguh", "zero", verbosity=0)
        assert query(empty_dsn, "select count(*) from teguh.t_default") == [(1,)]
    finally:
        _point_django_at("postgres")


def test_an_install_migrated_before_0002_gets_the_view_of_every_queue(django_project, empty_dsn: str) -> None:
    _point_django_at(psycopg2.extensions.parse_dsn(empty_dsn)["dbname"])
    try:
        call_command("migrate", "teguh", "0001", verbosity=0)
        query(empty_dsn, "drop view teguh.tasks")  # as the schema of a release before it
        query(empty_dsn, "select teguh.spawn_task('other', 'kept', '{}'::jsonb)")
        call_command("migrate", verbosity=0)  # 0002, then the schema re-applied after it
        assert query(empty_dsn, "select queue_name, task_name from teguh.tasks") == [("other", "kept")]
    finally:
        _point_django_at("postgres")
