"""Bounds how long teguh's own database calls may block on a silent network.

A connection whose peer vanished without a FIN or RST (a partition, a hung
server or proxy) leaves libpq blocked in `poll()` forever: TCP keepalives and
`tcp_user_timeout` catch a dead host, but not a peer that still acknowledges
bytes and never answers. So every guarded call registers a deadline here; a
single thread shuts down the socket of a call that outlives it, libpq then
fails the call with a connection error, and the usual reconnect-and-retry
path takes over (fencing makes a severed write safe to repeat or abandon).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

logger = logging.getLogger("teguh.watchdog")

TICK = 0.5
"""Seconds between checks: a call is severed at most this late."""


class Watchdog:
    """Severs connections whose guarded call runs past its deadline."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[int, tuple[Any, float, str]] = {}
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None
        self.severed = 0
        """Calls cut so far (for tests and diagnostics)."""

    @contextlib.contextmanager
    def guard(self, conn: Any, seconds: float | None, what: str) -> Iterator[None]:
        """Sever `conn` if the block is still running after `seconds` (None: no limit)."""
        if not seconds:
            yield
            return
        key = next(self._ids)
        with self._lock:
            self._calls[key] = (conn, time.monotonic() + seconds, what)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="teguh-watchdog", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._calls.pop(key, None)

    def _loop(self) -> None:
        while True:
            time.sleep(TICK)  # a periodic check, not synchronisation
            now = time.monotonic()
            with self._lock:
                overdue = [(k, c) for k, c in self._calls.items() if c[1] <= now]
                for key, _ in overdue:
                    del self._calls[key]
            for _, (conn, _, what) in overdue:
                logger.warning("%s got no answer from the database in time; dropping its connection", what)
                self.severed += 1
                sever(conn)


def sever(conn: Any) -> None:
    """Shut down a psycopg2 connection's socket under libpq, waking any blocked call."""
    with contextlib.suppress(Exception):
        fd = os.dup(conn.fileno())
        sock = socket.socket(fileno=fd)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()


WATCHDOG = Watchdog()
"""The process's watchdog (one thread, started on first use)."""
