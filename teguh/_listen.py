"""A LISTEN connection driven by select(), for waking waiters without polling.

It is a dedicated autocommit connection outside the pool (a pooled connection
would lose its LISTEN registrations when reused). A dropped connection shows up
as a readable socket with an error on `poll()`: the listener then reports itself
dead and callers fall back to polling.
"""

from __future__ import annotations

import contextlib
import logging
import select
import time
from typing import Any

import psycopg2
import psycopg2.extensions

from .errors import error_message

logger = logging.getLogger("teguh.client")


class Listener:
    """Receives notifications on a set of channels over its own connection.

    Args:
        dsn: where to connect.
        channels: channel names; they must be valid identifiers (teguh's are).
        connect_kwargs: extra psycopg2.connect keywords (application_name, ...).

    Caveats: a listener is not thread-safe; use one per waiting thread.
    """

    def __init__(self, dsn: str, channels: list[str], **connect_kwargs: Any) -> None:
        self._conn: Any = None
        try:
            conn = psycopg2.connect(dsn, **connect_kwargs)
            conn.autocommit = True
            with conn.cursor() as cur:
                for channel in channels:
                    cur.execute(f"listen {psycopg2.extensions.quote_ident(channel, cur)}")
            self._conn = conn
        except psycopg2.Error as exc:
            logger.warning("cannot LISTEN (%s); falling back to polling", error_message(exc))

    @property
    def alive(self) -> bool:
        """Whether the connection is usable; when false, callers must poll."""
        return self._conn is not None and not self._conn.closed

    def wait(self, timeout: float) -> list[str] | None:
        """Wait up to `timeout` seconds for notifications and return their payloads.

        Returns an empty list on timeout, and None (after waiting out the timeout)
        when the listener is dead.
        """
        if not self.alive:
            if timeout > 0:
                time.sleep(timeout)
            return None
        conn = self._conn
        try:
            if not conn.notifies:
                readable, _, _ = select.select([conn], [], [], max(timeout, 0))
                if not readable:
                    return []
            conn.poll()
            payloads = [n.payload for n in conn.notifies]
            conn.notifies.clear()
            return payloads
        except (psycopg2.Error, OSError, ValueError) as exc:
            logger.warning("LISTEN connection lost (%s); falling back to polling", exc)
            self.close()
            return None

    def close(self) -> None:
        """Close the connection (idempotent)."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            with contextlib.suppress(psycopg2.Error):
                conn.close()

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
