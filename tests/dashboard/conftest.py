"""Fixtures of the dashboard tests: a real database, a real app, a real HTTP server on a free port.

`serve_dashboard(token=..., authorize=...)` starts `teguh.dashboard` on
127.0.0.1 with the standard library server (as `teguh dashboard` does) and
stops it at teardown; `Browserless` is a tiny cookie-keeping HTTP client for
the status-code tests, so they exercise the real server, not the WSGI
callable.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _support.apps import queue_app
from _support.browserless import TOKEN, Browserless, Response

from teguh.app import App

pytest.importorskip("jinja2", reason="the dashboard needs the dashboard extra (jinja2)")

from teguh.dashboard import DashboardServer, make_app, serve

__all__ = ["TOKEN", "Browserless", "Response"]

Q = "web"


@pytest.fixture
def app(dsn: str) -> Iterator[App]:
    """An `App` on the test's database with queue `web` created."""
    with queue_app(dsn, Q) as application:
        yield application


@pytest.fixture
def serve_dashboard(app: App) -> Iterator[Callable[..., DashboardServer]]:
    """Start dashboards on free ports: `serve_dashboard(token=None, authorize=None, client=None)`."""
    servers: list[DashboardServer] = []

    def start(**options: Any) -> DashboardServer:
        client = options.pop("client", None) or app.client
        server = serve(make_app(client, **options), "127.0.0.1", 0).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def flash_of(response: Response) -> str:
    match = re.search(r'<p class="flash" id="flash">(.*?)</p>', response.body, re.S)
    return match.group(1) if match else ""
