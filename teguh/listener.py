"""The worker's LISTEN connection: a `select()` loop that also wakes on demand.

It waits on two things at once: the PostgreSQL socket (a notification on
`teguh_<queue>` means work may be ready) and a self-pipe (the worker's own runs
ending, or `stop()`). A dropped connection is noticed (an error on `poll()`, or
a failed liveness query when the socket stays silent for too long) and replaced
with backoff; after a reconnect the caller is told so it can claim at once,
since notifications sent while the connection was down are lost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import time
from typing import Any

import psycopg2
import psycopg2.extensions
import tenacity

from . import _dsn
from ._watchdog import WATCHDOG
from .errors import error_message

logger = logging.getLogger("teguh.listener")

NOTIFIED = "notified"
WOKEN = "woken"
TIMEOUT = "timeout"
RECONNECTED = "reconnected"
DISCONNECTED = "disconnected"

LIVENESS_INTERVAL = 30.0
"""Seconds of silence after which the listener checks its connection with a query.

A network partition can leave the socket silent forever; TCP keepalives (set
on the connection) and this check bound how long that goes unnoticed.
"""

LIVENESS_TIMEOUT = 10.0
"""Seconds the liveness query may take before the connection is dropped (see `_watchdog`)."""


class QueueListener:
    """LISTENs on one channel over its own autocommit connection.

    Args:
        dsn: where to connect.
        channel: the channel name (`teguh_<queue>`).
        connect_kwargs: extra `psycopg2.connect` keywords.
    """

    def __init__(self, dsn: str, channel: str, **connect_kwargs: Any) -> None:
        self._dsn = dsn
        self._channel = channel
        # keepalives and a connect timeout: a silent network must not block the loop
        self._kwargs = {**_dsn.network_defaults(dsn), **connect_kwargs}
        self._conn: Any = None
        self._last_activity = 0.0
        self._next_attempt = 0.0
        self._failures = 0
        self._backoff = tenacity.wait_exponential(multiplier=0.1, max=5.0) + tenacity.wait_random(0, 0.2)
        self._rfd, self._wfd = os.pipe()
        os.set_blocking(self._rfd, False)
        os.set_blocking(self._wfd, False)
        self.reconnects = 0

    @property
    def connected(self) -> bool:
        """Whether the LISTEN connection is up."""
        return self._conn is not None and not self._conn.closed

    @property
    def backend_pid(self) -> int | None:
        """The server process id of the LISTEN connection (for tests and diagnostics)."""
        return self._conn.info.backend_pid if self.connected else None

    def connect(self) -> bool:
        """Try to (re)connect and LISTEN now; returns whether it worked."""
        self._drop()
        try:
            conn = psycopg2.connect(self._dsn, **self._kwargs)
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"listen {psycopg2.extensions.quote_ident(self._channel, cur)}")
        except psycopg2.Error as exc:
            self._failures += 1
            delay = self._backoff(_Attempt(self._failures))
            self._next_attempt = time.monotonic() + delay
            logger.warning(
                "cannot LISTEN on %s (%s); retrying in %.1f s", self._channel, error_message(exc), delay
            )
            return False
        if self._failures or self.reconnects:
            logger.info("LISTEN connection on %s re-established", self._channel)
        self._conn = conn
        self._failures = 0
        self._last_activity = time.monotonic()
        return True

    def wake(self) -> None:
        """Make a current or the next `wait()` return `WOKEN` at once (any thread)."""
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wfd, b"x")

    def _drain_pipe(self) -> bool:
        woke = False
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._rfd, 512):
                woke = True
        return woke

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            with contextlib.suppress(Exception):
                conn.close()

    def _lost(self, reason: str) -> str:
        logger.warning("LISTEN connection on %s lost (%s); reconnecting", self._channel, reason)
        self._drop()
        self._next_attempt = time.monotonic()
        return DISCONNECTED

    def wait(self, timeout: float) -> str:
        """Wait up to `timeout` seconds; returns why it stopped waiting.

        `NOTIFIED`: a notification arrived. `WOKEN`: `wake()` was called.
        `TIMEOUT`: nothing happened. `RECONNECTED`: the connection was replaced
        (notifications may have been missed). `DISCONNECTED`: it was lost just now.
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            if not self.connected:
                if time.monotonic() >= self._next_attempt and self.connect():
                    self.reconnects += 1
                    return RECONNECTED
                wait_for = min(deadline, self._next_attempt) - time.monotonic()
                readable, _, _ = select.select([self._rfd], [], [], max(wait_for, 0.0))
                if readable and self._drain_pipe():
                    return WOKEN
                if time.monotonic() >= deadline:
                    return TIMEOUT
                continue

            conn = self._conn
            if conn.notifies:
                conn.notifies.clear()
                return NOTIFIED
            now = time.monotonic()
            if now - self._last_activity >= LIVENESS_INTERVAL:
                try:
                    with (
                        WATCHDOG.guard(conn, LIVENESS_TIMEOUT, "the LISTEN liveness check"),
                        conn.cursor() as cur,
                    ):
                        cur.execute("select 1")
                except psycopg2.Error as exc:
                    return self._lost(error_message(exc))
                self._last_activity = now
                if conn.notifies:
                    conn.notifies.clear()
                    return NOTIFIED
            wait_for = min(deadline, self._last_activity + LIVENESS_INTERVAL) - now
            try:
                readable, _, _ = select.select([conn, self._rfd], [], [], max(wait_for, 0.0))
            except (OSError, ValueError) as exc:
                return self._lost(str(exc))
            if self._rfd in readable and self._drain_pipe():
                return WOKEN
            if readable:
                try:
                    conn.poll()
                except (psycopg2.Error, OSError) as exc:
                    return self._lost(error_message(exc) if isinstance(exc, psycopg2.Error) else str(exc))
                self._last_activity = time.monotonic()
                if conn.closed:
                    return self._lost("connection closed")
                if conn.notifies:
                    conn.notifies.clear()
                    return NOTIFIED
                continue
            if time.monotonic() >= deadline:
                return TIMEOUT

    def close(self) -> None:
        """Close the connection and the pipe (idempotent)."""
        self._drop()
        for fd in (self._rfd, self._wfd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._rfd = self._wfd = -1


class _Attempt:
    """The slice of tenacity's RetryCallState that its wait strategies read."""

    def __init__(self, number: int) -> None:
        self.attempt_number = number
