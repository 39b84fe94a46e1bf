"""Helpers for the Django tests: polling with a deadline, and reads on a connection of their own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from _support.db import query as _query
from _support.polling import eventually as _eventually


def eventually(check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.02) -> Any:
    """`_support.polling.eventually`, waiting 15 s by default."""
    return _eventually(check, timeout, interval)


def query(dsn: str, sql: str, *args: Any) -> list[tuple]:
    """Rows of `sql` on a fresh autocommit connection (sees only committed data)."""
    return _query(dsn, sql, args)
