"""The `ledger` table: what the handlers of a test app ran, written through their own connections.

A handler records each thing it does (`record(task_id, what, attempt)`), each
row committed at once in a connection of its own (`_support.db.query`), so
the test process sees what a worker process did even after a SIGKILL, and
which database backend (`pid`) did it when. Used by the worker and the
composition tests' apps.
"""

from __future__ import annotations

from _support.db import query

__all__ = ["LEDGER_DDL", "Ledger", "create_ledger"]

LEDGER_DDL = """
create table if not exists ledger (
    id bigserial primary key,
    task_id text not null,
    what text not null,
    attempt int,
    pid int not null default pg_backend_pid(),
    at timestamptz not null default clock_timestamp()
)
"""


def create_ledger(dsn: str) -> None:
    """Make the `ledger` table (re-runnable)."""
    query(dsn, LEDGER_DDL)


class Ledger:
    """Writes and reads the `ledger` table, one short-lived autocommit connection per call."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def record(self, task_id: str, what: str, attempt: int | None = None) -> int:
        """Add a row; its id."""
        (row,) = query(
            self.dsn,
            "insert into ledger (task_id, what, attempt) values (%s, %s, %s) returning id",
            (task_id, what, attempt),
        )
        return row[0]

    def entries(self, task_id: str | None = None) -> list[tuple[str, int]]:
        """`(what, attempt)` in the order they were written (of one task, or all)."""
        if task_id is None:
            return query(self.dsn, "select what, attempt from ledger order by id")
        return query(self.dsn, "select what, attempt from ledger where task_id = %s order by id", (task_id,))

    def count(self, task_id: str | None, what: str) -> int:
        """How many rows of kind `what` a task wrote (task_id None: all tasks)."""
        if task_id is None:
            return query(self.dsn, "select count(*) from ledger where what = %s", (what,))[0][0]
        sql = "select count(*) from ledger where what = %s and task_id = %s"
        return query(self.dsn, sql, (what, task_id))[0][0]
