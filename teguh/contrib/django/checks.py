"""System checks: teguh's database must be PostgreSQL.

A project started with `django-admin startproject` runs on SQLite. Without
this check `manage.py check` reports nothing and `migrate` dies in teguh's
migration with a raw `no such function: pg_advisory_xact_lock`. The check
names the alias and its engine instead; `migrate` runs it first, and the
migration refuses a non-PostgreSQL database in one line as well (for
`--skip-checks` and `call_command`, which skip checks).
"""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from . import conf

E001 = "teguh.E001"
E002 = "teguh.E002"


def non_postgresql_message(alias: str, engine: str) -> str:
    """The one line both the check and the migration say."""
    return f"teguh needs PostgreSQL, but its database alias {alias!r} uses {engine!r}"


HINT = (
    "point TEGUH['DATABASE'] at a PostgreSQL database alias (ENGINE 'django.db.backends.postgresql'), "
    "or set TEGUH['DSN'] to a PostgreSQL DSN"
)


def check_database(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Error when teguh would live in a Django database that is not PostgreSQL."""
    from django.conf import settings
    from django.db import connections

    try:
        if not conf.shares_django_database():
            return []  # TEGUH['DSN']: teguh has its own connection
        alias = conf.database_alias()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id=E002, obj="TEGUH")]
    if connections[alias].vendor == "postgresql":  # PostGIS too
        return []
    engine = settings.DATABASES[alias].get("ENGINE", "")
    return [checks.Error(non_postgresql_message(alias, engine), hint=HINT, id=E001, obj="TEGUH")]
