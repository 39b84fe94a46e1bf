"""The web dashboard: see and operate queues, tasks, workers, schedules and batches.

`make_app(client, token=..., authorize=...)` returns a WSGI application that
`teguh dashboard` serves on 127.0.0.1 and that a Flask or Django project can
mount under a prefix. Pages update live over Server-Sent Events fed by
LISTEN/NOTIFY; actions (retry, cancel, pause, resume, trigger) are
CSRF-protected POSTs that need the token or the host app's approval.
Needs the `dashboard` extra (Jinja2). See docs/dashboard.md.
"""

from __future__ import annotations

from ._app import Dashboard, make_app
from ._auth import TOKEN_ENV
from ._mount import mount
from ._server import DashboardServer, serve

__all__ = ["TOKEN_ENV", "Dashboard", "DashboardServer", "make_app", "mount", "serve"]
