"""The `TEGUH` setting of a Django project, with its defaults.

```python
TEGUH = {
    "DSN": None,            # a libpq DSN; None: built from DATABASES[DATABASE]
    "DATABASE": "default",  # the Django database alias teguh lives in
    "QUEUE": "default",     # the app's queue
    "QUEUES": [],           # more queues `migrate` creates
    "TRANSACTIONAL_SPAWN": True,  # spawn on Django's connection (inside atomic())
    "AUTODISCOVER": True,   # import every installed app's `tasks.py` at startup
    "WORKER": {},           # defaults for `manage.py teguh worker` (concurrency=4, ...)
}
```

Every key is optional; with no `TEGUH` setting at all, teguh lives in the
`default` database, so a spawn commits or rolls back with Django's transaction.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from teguh import _validate

DJANGO_TASK_PREFIX = "django.tasks:"
"""Task names spawned by `TeguhBackend` start with this, followed by the function's module path.

Here rather than in `_tasks.py` (its user) because `_app.py` needs it too and
must import without `django.tasks` (Django 6) or the `django-tasks` backport.
"""

DEFAULTS: dict[str, Any] = {
    "DSN": None,
    "DATABASE": "default",
    "QUEUE": "default",
    "QUEUES": [],
    "TRANSACTIONAL_SPAWN": True,
    "AUTODISCOVER": True,
    "WORKER": {},
}

# Keys of DATABASES[...]["OPTIONS"] that Django consumes itself: the rest are
# libpq connection parameters (sslmode, service, options, ...).
_DJANGO_ONLY_OPTIONS = frozenset(
    {
        "isolation_level",
        "server_side_binding",
        "pool",
        "assume_role",
        "cursor_factory",
        "context",
        "prepare_threshold",
    }
)


def setting(name: str) -> Any:
    """One key of the `TEGUH` setting, else its default.

    Raises:
        ImproperlyConfigured: `TEGUH` is not a dict or has an unknown key.
    """
    user = getattr(settings, "TEGUH", None) or {}
    if not isinstance(user, dict):
        raise ImproperlyConfigured("the TEGUH setting must be a dict")
    unknown = sorted(set(user) - set(DEFAULTS))
    if unknown:
        raise ImproperlyConfigured(f"unknown TEGUH setting key(s): {', '.join(unknown)}")
    return user.get(name, DEFAULTS[name])


def database_alias() -> str:
    """The Django database alias that holds the teguh schema."""
    alias = setting("DATABASE")
    if alias not in settings.DATABASES:
        raise ImproperlyConfigured(f"TEGUH['DATABASE'] names an unknown database alias {alias!r}")
    return alias


def queue() -> str:
    """The app's queue: where tasks without one go."""
    try:
        return _validate.queue_name(setting("QUEUE"))
    except ValueError as exc:
        raise ImproperlyConfigured(f"TEGUH['QUEUE']: {exc}") from None


def queues() -> list[str]:
    """Every queue `migrate` creates: QUEUE first, then QUEUES."""
    names = [queue()]
    for name in setting("QUEUES"):
        try:
            name = _validate.queue_name(name)
        except ValueError as exc:
            raise ImproperlyConfigured(f"TEGUH['QUEUES']: {exc}") from None
        if name not in names:
            names.append(name)
    return names


def shares_django_database() -> bool:
    """Whether teguh uses Django's own database connection (no separate DSN)."""
    return not setting("DSN")


def dsn_from_database(alias: str) -> str:
    """A libpq DSN for the Django database `alias` (PostgreSQL backends only).

    Raises:
        ImproperlyConfigured: the alias is unknown or not PostgreSQL.
    """
    import psycopg2.extensions

    try:
        db = settings.DATABASES[alias]
    except KeyError:
        raise ImproperlyConfigured(f"unknown database alias {alias!r}") from None
    engine = db.get("ENGINE", "")
    if "postgresql" not in engine and "postgis" not in engine:
        raise ImproperlyConfigured(
            f"teguh needs PostgreSQL, but DATABASES[{alias!r}] uses {engine!r}: "
            "set TEGUH['DSN'] or point DATABASE at a PostgreSQL database"
        )
    params: dict[str, Any] = {}
    for key, name in (("NAME", "dbname"), ("USER", "user"), ("PASSWORD", "password"), ("HOST", "host")):
        if db.get(key):
            params[name] = db[key]
    if db.get("PORT"):
        params["port"] = str(db["PORT"])
    for key, value in (db.get("OPTIONS") or {}).items():
        if key not in _DJANGO_ONLY_OPTIONS and isinstance(value, (str, int)) and not isinstance(value, bool):
            params[key] = str(value)
    return psycopg2.extensions.make_dsn(**params)


def dsn() -> str:
    """The DSN teguh connects to: TEGUH['DSN'], else the one of DATABASES[DATABASE]."""
    return setting("DSN") or dsn_from_database(database_alias())


TASKS_VIEW = 'teguh"."tasks'
"""The `db_table` of the admin's unmanaged `Task` model: the view of every queue's tasks."""


def task_table() -> str:
    """The tasks table of the app's queue, `teguh.t_<queue>`, as a Django `db_table`.

    The `db_table` of the `Task` model in migration 0001; since 0002 the model
    reads `TASKS_VIEW`, every queue's tasks.

    The quotes make Django emit `"teguh"."t_<queue>"`, a schema-qualified name.
    """
    return f'teguh"."t_{queue()}'


def worker_defaults() -> dict[str, Any]:
    """`TEGUH['WORKER']` as defaults for `manage.py teguh worker` (option names as in `app.worker()`)."""
    options = setting("WORKER")
    if not isinstance(options, dict):
        raise ImproperlyConfigured("TEGUH['WORKER'] must be a dict")
    return {str(key).lower().replace("-", "_"): value for key, value in options.items()}
