"""Mounting the dashboard under a prefix of a host WSGI app (Django's, or any other).

Flask users have werkzeug's `DispatcherMiddleware`; a Django project has no
prefix dispatcher of its own, so this is the few lines every project would
otherwise copy: requests under the prefix go to the dashboard with
`SCRIPT_NAME`/`PATH_INFO` moved, everything else to the host app.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def mount(host: WSGIApp, dashboard: WSGIApp, prefix: str = "/teguh") -> WSGIApp:
    """A WSGI app that serves `dashboard` under `prefix` and `host` everywhere else.

    Args:
        host: the project's WSGI application (e.g. `get_wsgi_application()`).
        dashboard: `teguh.dashboard.make_app(...)`.
        prefix: where the dashboard answers, e.g. "/teguh" (no trailing slash).
    """
    prefix = "/" + prefix.strip("/")

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == prefix or path.startswith(prefix + "/"):
            environ["SCRIPT_NAME"] = (environ.get("SCRIPT_NAME") or "").rstrip("/") + prefix
            environ["PATH_INFO"] = path[len(prefix) :] or "/"
            return dashboard(environ, start_response)
        return host(environ, start_response)

    return app
