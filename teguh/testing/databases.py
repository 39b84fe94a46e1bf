"""Databases for tests: a throwaway one with the schema installed, and pointing an app at one.

`temporary_database` needs a role with `CREATEDB`; the database is dropped
`with (force)` at the end even if connections remain, so a leaked connection
does not leak the database.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import uuid
from collections.abc import Iterator

from .. import _dsn, _sql
from ..app import App
from ..client import Client, install

logger = logging.getLogger("teguh.testing")


@contextlib.contextmanager
def use_database(app: App, dsn: str) -> Iterator[App]:
    """Point `app` at `dsn` for the block, through a new client; restore the previous one after.

    For apps defined at import time (`app = teguh.App(queue="jobs")`) that a
    test runs against its own database. Workers built inside the block use it
    too. The block's client is closed at the end.
    """
    with app.use_client(Client(dsn), dsn=dsn, close=True):
        yield app


_db_numbers = itertools.count()


@contextlib.contextmanager
def temporary_database(server_dsn: str | None = None) -> Iterator[str]:
    """Create a fresh database with the teguh schema; yield its DSN; drop it afterwards.

    `server_dsn` points at any database of the server to use (default: the
    usual resolution: `TEGUH_DSN`, `DATABASE_URL`, `PG*`, else the embedded
    PostgreSQL). The role needs `CREATEDB`.
    """
    import psycopg2

    with Client(server_dsn, min_connections=0, max_connections=1) as admin:
        base = admin.dsn
    name = f"teguh_test_{os.getpid()}_{next(_db_numbers)}_{uuid.uuid4().hex[:6]}"
    conn = psycopg2.connect(base)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(_sql.create_database(name))
        dsn = psycopg2.extensions.make_dsn(base, dbname=name)
        install(dsn)
        try:
            yield dsn
        finally:
            with conn.cursor() as cur:
                cur.execute(_sql.drop_database(name))
    finally:
        conn.close()
        logger.debug("temporary database %s (%s) dropped", name, _dsn.describe(base))
