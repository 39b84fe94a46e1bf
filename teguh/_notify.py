"""Waiting for notifications: one LISTEN connection class, and a polling sibling.

Every waiter in teguh (the worker's idle wait, `Client.wait_for_result`) waits
through the `Waiter` protocol: `wait(timeout)` returns why it stopped waiting,
`wake()` ends a wait from any thread, `close()` releases it. Two siblings
implement it:

- `ListenWaiter`, the one LISTEN connection: a dedicated autocommit
  connection outside the pool (a pooled connection would lose its LISTEN
  registrations when reused), LISTENing on one or several channels, waited on
  with `select()` together with a self-pipe for `wake()`.
- `PollingWaiter`, which holds no connection: `wait()` ends on `wake()` or
  its timeout, so the caller polls.

How waiting fails, and who handles it:

- The server restarts, or an admin terminates the backend: the socket turns
  readable with an error, `ListenWaiter.wait()` returns `DISCONNECTED` and
  reconnects on its next call (at once, then with backoff) and returns
  `RECONNECTED`, so callers look for work they may have missed meanwhile.
- A silent network partition: nothing arrives and nothing fails. TCP
  keepalives (computed for the LISTEN DSN) and a liveness query after
  `LIVENESS_INTERVAL` seconds of silence, bounded by the watchdog, notice it;
  then as above.
- PgBouncer in transaction or statement pooling mode: LISTEN is accepted but
  no NOTIFY ever arrives, and nothing fails. `probe_notify` detects it at
  start (the worker sends itself a notification), and `open_queue_waiter`
  then returns a `PollingWaiter` instead of a connection that can never wake it,
  with a WARNING naming the fix (`TEGUH_LISTEN_DSN`).
- The database is unreachable: `ListenWaiter` keeps retrying with backoff
  while its waits end on their timeouts, so callers poll meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import psycopg2
import psycopg2.extensions

from . import _backoff, _dsn, _sql
from ._watchdog import WATCHDOG
from .errors import error_message

if TYPE_CHECKING:
    from ._connection import ClientBase as Client

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

RECONNECT_BACKOFF = _backoff.Backoff(0.1, 5.0, jitter=0.2)
"""Delays between failed LISTEN connection attempts: 0.1 s doubling up to 5 s, plus up to 0.2 s."""

PROBE_TIMEOUT = 2.0
"""Seconds the start-up probe waits for its own notification.

A direct connection hears it within milliseconds; the wait only matters when
LISTEN is broken, where it delays the worker's start by this much once.
"""

OK = "ok"
BROKEN = "broken"
UNKNOWN = "unknown"


class Waiter(Protocol):
    """What a loop that sleeps until something happens needs (see the module docstring)."""

    def wait(self, timeout: float) -> str:
        """Wait up to `timeout` seconds; returns why (`NOTIFIED`, `WOKEN`, `TIMEOUT`, ...)."""
        ...

    def wake(self) -> None:
        """Make a current or the next `wait()` return `WOKEN` at once (any thread)."""
        ...

    def close(self) -> None:
        """Release the waiter (idempotent)."""
        ...

    @property
    def backend_pid(self) -> int | None:
        """The server process id of the LISTEN connection, None when there is none."""
        ...


class _WakePipe:
    """A self-pipe: `wake()` from any thread makes its read end readable for `select()`."""

    def __init__(self) -> None:
        self.rfd, self.wfd = os.pipe()
        os.set_blocking(self.rfd, False)
        os.set_blocking(self.wfd, False)

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self.wfd, b"x")

    def drain(self) -> bool:
        """Empty the pipe; returns whether a wake-up was pending."""
        woke = False
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self.rfd, 512):
                woke = True
        return woke

    def close(self) -> None:
        for fd in (self.rfd, self.wfd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.rfd = self.wfd = -1


def _listen(cur: Any, channels: Sequence[str]) -> None:
    for channel in channels:
        cur.execute(_sql.listen(channel))


class PollingWaiter:
    """A waiter without a connection: `wait()` ends on `wake()` or its timeout.

    Used when notifications cannot arrive (PgBouncer in transaction pooling
    mode), so the caller polls every timeout and still wakes on `wake()`.
    """

    def __init__(self) -> None:
        self._pipe = _WakePipe()
        self.reconnects = 0
        self.payloads: list[str] = []

    @property
    def connected(self) -> bool:
        """Always false: there is no LISTEN connection."""
        return False

    @property
    def backend_pid(self) -> int | None:
        """Always None: there is no LISTEN connection."""
        return None

    def connect(self) -> bool:
        """Never connects; returns False."""
        return False

    def wake(self) -> None:
        """Make a current or the next `wait()` return `WOKEN` at once (any thread)."""
        self._pipe.wake()

    def wait(self, timeout: float) -> str:
        """Wait up to `timeout` seconds; returns `WOKEN` or `TIMEOUT`."""
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            left = deadline - time.monotonic()
            readable, _, _ = select.select([self._pipe.rfd], [], [], max(left, 0.0))
            if readable and self._pipe.drain():
                return WOKEN
            if time.monotonic() >= deadline:
                return TIMEOUT

    def close(self) -> None:
        """Close the wake-up pipe (idempotent)."""
        self._pipe.close()

    def __enter__(self) -> PollingWaiter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ListenWaiter:
    """The LISTEN connection: waits for notifications on its channels, reconnects, checks liveness.

    It does not connect in the constructor: call `connect()` (or the first
    `wait()` does). A dropped connection is noticed (an error on `poll()`, or a
    failed liveness query after `LIVENESS_INTERVAL` seconds of silence) and
    replaced with backoff from within later `wait()` calls.

    Args:
        dsn: where to connect; keepalives and a connect timeout are computed for it.
        channels: one channel name, or several; they must be valid identifiers.
        log: the logger for connection trouble (default `teguh.listener`).
        connect_kwargs: extra `psycopg2.connect` keywords (application_name, ...).

    Caveats: not thread-safe, except `wake()`; one thread waits on it.
    """

    def __init__(
        self,
        dsn: str,
        channels: str | Sequence[str],
        *,
        log: logging.Logger | None = None,
        **connect_kwargs: Any,
    ) -> None:
        self._dsn = dsn
        self._channels = [channels] if isinstance(channels, str) else list(channels)
        self._channel = ", ".join(self._channels)  # for messages
        self._log = log or logger
        # keepalives and a connect timeout: a silent network must not block the loop
        self._kwargs = {**_dsn.network_defaults(dsn), **connect_kwargs}
        self._conn: Any = None
        self._last_activity = 0.0
        self._attempts = _backoff.Attempts(RECONNECT_BACKOFF)
        self._pipe = _WakePipe()
        self.reconnects = 0
        """How many times a lost connection was replaced."""
        self.payloads: list[str] = []
        """The payloads of the notifications that ended the last `wait()` with `NOTIFIED`."""
        self.notifications: list[tuple[str, str]] = []
        """(channel, payload) of those notifications, for a waiter on several channels."""

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
            try:
                conn.autocommit = True
                with conn.cursor() as cur:
                    _listen(cur, self._channels)
            except BaseException:
                with contextlib.suppress(Exception):
                    conn.close()
                raise
        except psycopg2.Error as exc:
            delay = self._attempts.failed()
            self._log.warning(
                "cannot LISTEN on %s (%s); retrying in %.1f s", self._channel, error_message(exc), delay
            )
            return False
        if self._attempts.failures or self.reconnects:
            self._log.info("LISTEN connection on %s re-established", self._channel)
        self._conn = conn
        self._attempts.succeeded()
        self._last_activity = time.monotonic()
        return True

    def wake(self) -> None:
        """Make a current or the next `wait()` return `WOKEN` at once (any thread)."""
        self._pipe.wake()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            with contextlib.suppress(Exception):
                conn.close()

    def _lost(self, reason: str) -> str:
        self._log.warning("LISTEN connection on %s lost (%s); reconnecting", self._channel, reason)
        self._drop()
        self._attempts.retry_now()
        return DISCONNECTED

    def _take(self, conn: Any) -> str:
        self.payloads = [n.payload for n in conn.notifies]
        self.notifications = [(n.channel, n.payload) for n in conn.notifies]
        conn.notifies.clear()
        return NOTIFIED

    def wait(self, timeout: float) -> str:
        """Wait up to `timeout` seconds; returns why it stopped waiting.

        `NOTIFIED`: a notification arrived (its payloads are in `payloads`).
        `WOKEN`: `wake()` was called. `TIMEOUT`: nothing happened.
        `RECONNECTED`: the connection was replaced (notifications may have been
        missed). `DISCONNECTED`: it was lost just now.
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            if not self.connected:
                if self._attempts.due() and self.connect():
                    self.reconnects += 1
                    return RECONNECTED
                wait_for = min(deadline - time.monotonic(), self._attempts.remaining())
                readable, _, _ = select.select([self._pipe.rfd], [], [], max(wait_for, 0.0))
                if readable and self._pipe.drain():
                    return WOKEN
                if time.monotonic() >= deadline:
                    return TIMEOUT
                continue

            conn = self._conn
            if conn.notifies:
                return self._take(conn)
            now = time.monotonic()
            if now - self._last_activity >= LIVENESS_INTERVAL:
                try:
                    with (
                        WATCHDOG.guard(conn, LIVENESS_TIMEOUT, "the LISTEN liveness check"),
                        conn.cursor() as cur,
                    ):
                        cur.execute(_sql.LIVENESS)
                except psycopg2.Error as exc:
                    return self._lost(error_message(exc))
                self._last_activity = now
                if conn.notifies:
                    return self._take(conn)
            wait_for = min(deadline, self._last_activity + LIVENESS_INTERVAL) - now
            try:
                readable, _, _ = select.select([conn, self._pipe.rfd], [], [], max(wait_for, 0.0))
            except (OSError, ValueError) as exc:
                return self._lost(str(exc))
            if self._pipe.rfd in readable and self._pipe.drain():
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
                    return self._take(conn)
                continue
            if time.monotonic() >= deadline:
                return TIMEOUT

    def close(self) -> None:
        """Close the connection and the pipe (idempotent)."""
        self._drop()
        self._pipe.close()

    def __enter__(self) -> ListenWaiter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def probe_notify(
    client: Client, listen_dsn: str, *, timeout: float = PROBE_TIMEOUT, **connect_kwargs: Any
) -> str:
    """Check that a NOTIFY sent through `client`'s pool reaches a LISTEN on `listen_dsn`.

    A LISTEN connection through PgBouncer in transaction (or statement) pooling
    mode connects and accepts `LISTEN` without complaint, yet never receives a
    notification: the registration lives on whichever server connection ran
    that statement, which is handed to other clients as soon as it ends.

    Returns `OK` when the notification arrived, `BROKEN` when everything worked
    but nothing arrived within `timeout` seconds (a transaction-pooling proxy in
    the way), and `UNKNOWN` when the probe itself could not run (the database is
    unreachable right now; the listener's own reconnect logic handles that).
    """
    channel = f"teguh_probe_{uuid.uuid4().hex}"
    payload = uuid.uuid4().hex
    try:
        conn = psycopg2.connect(listen_dsn, **{**_dsn.network_defaults(listen_dsn), **connect_kwargs})
    except psycopg2.Error as exc:
        logger.debug("NOTIFY probe: cannot connect (%s)", error_message(exc))
        return UNKNOWN
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            _listen(cur, [channel])
        # Sent from the pool side, as the database's own notifications are sent
        # from other sessions: a NOTIFY on the listening connection itself would
        # come back through a transaction pooler within the same statement.
        client._run(
            "notify probe",
            lambda cur: cur.execute(_sql.NOTIFY, (channel, payload)),
            check_schema=False,
        )
        deadline = time.monotonic() + timeout
        while True:
            if any(n.channel == channel and n.payload == payload for n in conn.notifies):
                return OK
            left = deadline - time.monotonic()
            if left <= 0:
                return BROKEN
            readable, _, _ = select.select([conn], [], [], left)
            if readable:
                conn.poll()
    except (psycopg2.Error, OSError) as exc:
        logger.debug("NOTIFY probe failed (%s)", exc)
        return UNKNOWN
    except Exception as exc:  # a TeguhError from the pool side: the database is unreachable
        logger.debug("NOTIFY probe could not notify (%s)", exc)
        return UNKNOWN
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def open_queue_waiter(
    client: Client, queue: str | Sequence[str], listen_dsn: str, poll_interval: float
) -> Waiter:
    """The worker's waiter for `queue` (or several queues): LISTEN on `listen_dsn`, or polling.

    One connection LISTENs on every queue's channel (`teguh_<queue>`), so a
    worker serving several queues holds one LISTEN connection, not one per
    queue. At start the worker sends itself one notification on a private
    channel, from the pool side, and checks that the LISTEN side hears it; if
    not (PgBouncer in transaction mode), it logs a WARNING naming the fix and
    returns a `PollingWaiter`, which serves every queue alike.
    """
    queues = [queue] if isinstance(queue, str) else list(queue)
    names = ",".join(queues)  # PostgreSQL truncates an application_name past 63 bytes: fine for a label
    application_name = f"teguh-listener:{names}"
    listener = ListenWaiter(listen_dsn, [f"teguh_{q}" for q in queues], application_name=application_name)
    if not listener.connect():
        return listener  # unreachable for now: it retries with backoff, as before
    # its own name: the probe's short-lived backend is not the listener's
    verdict = probe_notify(client, listen_dsn, application_name=f"teguh-listen-probe:{names}")
    if verdict != BROKEN:
        return listener
    listener.close()
    same = listen_dsn == client.dsn
    logger.warning(
        "LISTEN/NOTIFY does not work over the LISTEN connection (%s): a notification sent by this "
        "worker never arrived, as happens behind PgBouncer in transaction or statement pooling mode. "
        "Falling back to polling every %.1f s, so new tasks may wait that long. Fix: set %s "
        "(or --listen-dsn, or Worker(listen_dsn=...)) to a direct connection to PostgreSQL%s.",
        _dsn.describe(listen_dsn),
        poll_interval,
        _dsn.LISTEN_DSN_ENV,
        " that bypasses the pooler" if same else "",
        extra={"queue": names},
    )
    return PollingWaiter()
