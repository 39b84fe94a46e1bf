"""Plain SQL on a test database through a short-lived autocommit connection of its own.

What the test apps' handlers use to write their ledgers (what ran, where,
when): a row committed at once, outside any teguh transaction, survives the
SIGKILL of the process that wrote it, and the test process reads it the same way.
"""

from __future__ import annotations

from typing import Any

import psycopg2

__all__ = ["query"]


def query(dsn: str, sql: str, args: tuple[Any, ...] = ()) -> list[tuple]:
    """Run one statement in its own autocommit connection; its rows (none for a statement without)."""
    conn = psycopg2.connect(dsn)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()
