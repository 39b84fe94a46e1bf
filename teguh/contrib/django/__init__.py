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

See docs/django.md. Settings: `teguh.contrib.django.conf`.
"""

from __future__ import annotations

from typing import Any

from ._app import DJANGO_TASK_PREFIX, DjangoApp, get_app, spawn_task

__all__ = ["DJANGO_TASK_PREFIX", "DjangoApp", "TeguhBackend", "app", "get_app", "spawn_task"]


def __getattr__(name: str) -> Any:
    # `app` needs settings and `TeguhBackend` needs django.tasks or django-tasks:
    # resolve both on first use, so importing this package needs neither.
    if name == "app":
        return get_app()
    if name == "TeguhBackend":
        from .backend import TeguhBackend

        return TeguhBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
