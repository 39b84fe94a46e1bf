"""Choosing the worker's wake-up source: LISTEN when NOTIFY really arrives, else polling.

A LISTEN connection through PgBouncer in transaction (or statement) pooling
mode connects and accepts `LISTEN` without complaint, yet never receives a
notification: the registration lives on whichever server connection ran that
statement, and that connection is handed to other clients as soon as the
statement ends. Nothing fails, so the worker would silently wake only every
`poll_interval`. At start the worker therefore sends itself one notification
on a private channel, from the pool side, and checks that the LISTEN side
hears it. If it does not, the worker logs a WARNING naming the fix and polls
instead of holding a connection that can never wake it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import select
import time
import uuid
from typing import TYPE_CHECKING, Any

import psycopg2
import psycopg2.extensions

from . import _dsn
from .errors import error_message
from .listener import QueueListener

if TYPE_CHECKING:
    from .client import Client

logger = logging.getLogger("teguh.listener")

PROBE_TIMEOUT = 2.0
"""Seconds the start-up probe waits for its own notification.

A direct connection hears it within milliseconds; the wait only matters when
LISTEN is broken, where it delays the worker's start by this much once.
"""

LISTEN_DSN_ENV = "TEGUH_LISTEN_DSN"
"""The environment variable naming a direct (non-pooled) DSN for LISTEN connections."""

OK = "ok"
BROKEN = "broken"
UNKNOWN = "unknown"


def probe_notify(
    client: Client, listen_dsn: str, *, timeout: float = PROBE_TIMEOUT, **connect_kwargs: Any
) -> str:
    """Check that a NOTIFY sent through `client`'s pool reaches a LISTEN on `listen_dsn`.

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
            cur.execute(f"listen {psycopg2.extensions.quote_ident(channel, cur)}")
        # Sent from the pool side, as the database's own notifications are sent
        # from other sessions: a NOTIFY on the listening connection itself would
        # come back through a transaction pooler within the same statement.
        client._run(
            "notify probe",
            lambda cur: cur.execute("select pg_notify(%s, %s)", (channel, payload)),
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


class PollingListener(QueueListener):
    """A `QueueListener` that never connects: `wait()` ends on `wake()` or its timeout.

    Used when notifications cannot reach this worker, so it polls every
    `poll_interval` (and still wakes on its own runs ending and at `next_due`).
    """

    def connect(self) -> bool:
        """Never connect; `wait()` then waits on the wake-up pipe alone."""
        self._next_attempt = math.inf
        return False


def open_listener(client: Client, queue: str, listen_dsn: str, poll_interval: float) -> QueueListener:
    """The worker's listener for `queue`: LISTEN on `listen_dsn`, or polling if NOTIFY cannot arrive there."""
    application_name = f"teguh-listener:{queue}"
    listener = QueueListener(listen_dsn, f"teguh_{queue}", application_name=application_name)
    if not listener.connect():
        return listener  # unreachable for now: it retries with backoff, as before
    # its own name: the probe's short-lived backend is not the listener's
    verdict = probe_notify(client, listen_dsn, application_name=f"teguh-listen-probe:{queue}")
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
        LISTEN_DSN_ENV,
        " that bypasses the pooler" if same else "",
        extra={"queue": queue},
    )
    return PollingListener(listen_dsn, f"teguh_{queue}")
