"""Serving the dashboard: the standard library's WSGI server, one thread per connection.

Why wsgiref and not a third-party server: the dashboard is an operator's
tool with a handful of users, so throughput does not matter, while streaming
does: each open page holds one Server-Sent Events response open for as long
as it is shown. wsgiref writes every chunk the app yields straight to the
socket (its writer is unbuffered), so events reach the browser at once, and
with `ThreadingMixIn` a long stream holds one thread, not the server. It
adds no dependency and no worker model to configure; a host app that
mounts the dashboard serves it with its own server instead (see
docs/dashboard.md for the buffering settings of gunicorn and nginx).
"""

from __future__ import annotations

import logging
import socketserver
import threading
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

logger = logging.getLogger("teguh.dashboard")


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    """A WSGIServer that serves each connection in its own daemon thread."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


class _Handler(WSGIRequestHandler):
    """Logs requests to the `teguh.dashboard` logger (at DEBUG) instead of stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)


class DashboardServer:
    """A running dashboard server: `url`, `port`, `serve_forever()`, or `start()` in a thread, `stop()`."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 8080) -> None:
        self.app = app
        self._server = make_server(host, port, app, server_class=_Server, handler_class=_Handler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port it listens on (useful with port 0: a free one)."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The base URL, e.g. http://127.0.0.1:8080."""
        host = self._server.server_address[0]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def serve_forever(self) -> None:
        """Serve until `stop()` (from another thread) or KeyboardInterrupt."""
        self._server.serve_forever(poll_interval=0.5)

    def start(self) -> DashboardServer:
        """Serve in a daemon thread; returns self."""
        self._thread = threading.Thread(target=self.serve_forever, name="teguh-dashboard-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, end open event streams, close the socket."""
        close = getattr(self.app, "close", None)
        if close is not None:
            close()  # ends the SSE streams, which would otherwise hold their threads
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5.0)
        self._server.server_close()

    def __enter__(self) -> DashboardServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(app: Any, host: str = "127.0.0.1", port: int = 8080) -> DashboardServer:
    """A `DashboardServer` for the WSGI `app` on host:port; call `serve_forever()` or `start()`."""
    return DashboardServer(app, host, port)
