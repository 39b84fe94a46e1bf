"""Django integration: add `"teguh.contrib.django"` to `INSTALLED_APPS`.

- `from teguh.contrib.django import app` (or `get_app()`): the project's
  `teguh.App`; register handlers with `@app.task("name")` in each app's `tasks.py`
  (imported at startup).
- `spawn_task(...)` and every task's `.spawn()` run on Django's connection, so a
  spawn inside `transaction.atomic()` commits or rolls back with it.
- `manage.py migrate` installs and upgrades the teguh schema; `manage.py teguh ...`
  is the `teguh` CLI on the project's database.
- `TASKS = {"default": {"BACKEND": "teguh.contrib.django.TeguhBackend"}}`: the
  `django.tasks` backend.
- `database_settings(dsn=None)`: a `DATABASES` entry for teguh's database (for
  settings.py; with no DSN configured, the embedded PostgreSQL).

See docs/django.md. Settings: `teguh.contrib.django.conf`.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "DJANGO_TASK_PREFIX",
    "DjangoApp",
    "TeguhBackend",
    "app",
    "database_settings",
    "get_app",
    "spawn_task",
]

# Everything resolves on first use: settings.py may import `database_settings`
# before Django is configured, and `TeguhBackend` needs django.tasks (Django 6)
# or the django-tasks backport, which the rest does not.
_LAZY = {
    "DJANGO_TASK_PREFIX": ".conf",
    "DjangoApp": "._app",
    "get_app": "._app",
    "spawn_task": "._app",
    "TeguhBackend": ".backend",
    "database_settings": ".db",
}


def __getattr__(name: str) -> Any:
    if name == "app":
        return importlib.import_module("._app", __name__).get_app()
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
