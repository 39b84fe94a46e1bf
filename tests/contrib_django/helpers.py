"""Helpers for the Django tests: polling with a deadline, and reads on a connection of their own."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg2


def eventually(check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.02) -> Any:
    """Poll `check` until it returns a truthy value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {check!r}")
        time.sleep(interval)  # a polling interval, not synchronisation


def query(dsn: str, sql: str, *args: Any) -> list[tuple]:
    """Rows of `sql` on a fresh autocommit connection (sees only committed data)."""
    conn = psycopg2.connect(dsn)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()
