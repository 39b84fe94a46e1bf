"""`database_settings()`: a Django `DATABASES` entry for the database teguh uses (no Django import)."""

from __future__ import annotations

from typing import Any

_PARAMS = {"dbname": "NAME", "user": "USER", "password": "PASSWORD", "host": "HOST", "port": "PORT"}


def database_settings(dsn: str | None = None, **extra: Any) -> dict[str, Any]:
    """A `DATABASES["default"]`-style dict for `dsn` (a libpq DSN or URI).

    With `dsn=None`, teguh's own resolution applies: `TEGUH_DSN`, `DATABASE_URL`,
    libpq's `PG*` variables, else the embedded PostgreSQL (started if needed, as
    by `teguh dev`), so Django and teguh share one database with no setup.
    Other libpq parameters (sslmode, ...) go to `OPTIONS`; `extra` keys
    (`CONN_MAX_AGE`, ...) are added as they are.
    """
    import psycopg2.extensions

    if dsn is None:
        from teguh.client import Client

        dsn = Client(dsn, min_connections=0).dsn
    info = psycopg2.extensions.parse_dsn(dsn) if dsn else {}
    entry: dict[str, Any] = {"ENGINE": "django.db.backends.postgresql"}
    for key, name in _PARAMS.items():
        entry[name] = info.pop(key, "")
    entry["OPTIONS"] = dict(info)
    entry.update(extra)
    return entry
