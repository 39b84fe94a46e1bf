"""The dashboard mounted in a Flask app, the app's own session deciding who acts (real HTTP)."""

from __future__ import annotations

from typing import Any

import pytest
from _support.browserless import Browserless

from . import flask_app as fa

pytest.importorskip("jinja2", reason="the dashboard needs the dashboard extra (jinja2)")


def test_flask_session_admins_act_through_the_mounted_dashboard(flask_app: Any) -> None:
    from flask import session
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    from teguh.dashboard import make_app, serve

    flask_app.secret_key = "test-secret"

    @flask_app.post("/become-admin")
    def become_admin() -> str:
        session["is_admin"] = True
        return "ok"

    def admins_only(environ: Any) -> bool:  # the example of docs/dashboard.md
        with flask_app.request_context(environ):
            return bool(session.get("is_admin"))

    dashboard = make_app(fa.ext.client, authorize=admins_only)
    flask_app.wsgi_app = DispatcherMiddleware(flask_app.wsgi_app, {"/teguh": dashboard})
    server = serve(flask_app, "127.0.0.1", 0).start()
    try:
        web = Browserless(server.url)
        csrf = web.csrf_for("/teguh/")
        assert web.post(f"/teguh/queues/{fa.Q}/pause", {"csrf_token": csrf}).status == 403
        assert not fa.ext.client.get_queue_options(fa.Q)["paused"]
        assert web.post("/become-admin").status == 200
        done = web.post(f"/teguh/queues/{fa.Q}/pause", {"csrf_token": csrf, "next": "/teguh/"})
        assert done.status == 303 and done.header("Location") == "/teguh/"
        assert fa.ext.client.get_queue_options(fa.Q)["paused"]
    finally:
        server.stop()
