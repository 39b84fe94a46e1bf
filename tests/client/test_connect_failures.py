"""Connection failures: wrong settings fail at once in one line, the rest retry quietly.

Run against real PostgreSQL servers: an unknown database or role on the
session's server, a wrong and a missing password on a server of the test's own
whose pg_hba.conf asks one role for a password, an unknown host name, and a
port where nothing listens (the transient case). The CLI runs in a subprocess,
so what is asserted is exactly what a user sees on stderr.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

import teguh
from teguh import _connect_errors
from teguh._connection import RETRY_ATTEMPTS

PASSWORD = "s3cret-pw"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def password_server() -> Iterator[dict[str, str]]:
    """A server of this module's own where role `pw` must give a password (the others are trusted)."""
    import tempfile

    import _pg_servers

    server = _pg_servers.start(tempfile.mkdtemp(prefix="teguh-pw-pg-"))
    try:
        info = psycopg2.extensions.parse_dsn(server.get_uri())
        host, port = info.get("host", "/tmp"), info.get("port", "5432")
        pgdata = Path(getattr(server, "pgdata", None) or server.server.pgdata)  # Debian's or pgserver's
        admin = psycopg2.connect(host=host, port=port, user=info.get("user", "postgres"), dbname="postgres")
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f"create role pw login password '{PASSWORD}'")
        hba = pgdata / "pg_hba.conf"
        hba.write_text("local all pw scram-sha-256\n" + hba.read_text())
        with admin.cursor() as cur:
            cur.execute("select pg_reload_conf()")
        admin.close()
        yield {"host": host, "port": port}
    finally:
        server.cleanup()


def _permanent_dsns(pg_server: Any, password_server: dict[str, str]) -> dict[str, tuple[str, str]]:
    """name -> (DSN, what the error line must say)."""
    here = f"host={pg_server.host} port={pg_server.port}"
    pw = f"host={password_server['host']} port={password_server['port']} user=pw dbname=postgres"
    return {
        "no-database": (f"{here} user={pg_server.user} dbname=no_such_db", "no_such_db\" does not exist"),
        "no-role": (f"{here} user=no_such_role dbname=postgres", 'role "no_such_role" does not exist'),
        "wrong-password": (f"{pw} password=wrong-{PASSWORD}", 'password authentication failed for user "pw"'),
        "no-password": (pw, "no password supplied"),
        "unknown-host": ("host=nonexistent.invalid port=5432 dbname=x user=u", "nonexistent.invalid"),
    }


CASES = ["no-database", "no-role", "wrong-password", "no-password", "unknown-host"]
COMMANDS = pytest.mark.parametrize(
    "command", [["queue", "list"], ["worker", "--app", "connapp:app"]], ids=["queue", "worker"]
)


@pytest.mark.parametrize("case", CASES)
def test_a_permanent_failure_raises_cannot_connect_after_one_attempt(
    case: str, pg_server: Any, password_server: dict[str, str], caplog: pytest.LogCaptureFixture, monkeypatch
) -> None:
    dsn, says = _permanent_dsns(pg_server, password_server)[case]
    connects: list[str] = []
    real_connect = psycopg2.connect

    def counting_connect(*args: Any, **kwargs: Any) -> Any:
        connects.append("x")
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(psycopg2, "connect", counting_connect)
    caplog.set_level(logging.DEBUG, logger="teguh")
    with teguh.Client(dsn, min_connections=0) as client, pytest.raises(teguh.CannotConnect) as raised:
        client.list_queues()
    message = str(raised.value)
    assert isinstance(raised.value, teguh.ConnectionLost)  # callers catching that still do
    assert says in message
    assert "\n" not in message
    assert PASSWORD not in message
    host = dsn.split()[0].split("=")[1]
    assert f"host={host} port=" in message
    assert len(connects) == 1
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]


def test_a_transient_failure_retries_quietly_then_raises_one_summary(caplog: Any) -> None:
    port = _free_port()  # nothing listens there: connection refused
    caplog.set_level(logging.DEBUG, logger="teguh")
    dsn = f"host=127.0.0.1 port={port} dbname=shop user=u password={PASSWORD}"
    with teguh.Client(dsn) as client, pytest.raises(teguh.ConnectionLost) as raised:
        client.list_queues()
    assert not isinstance(raised.value, teguh.CannotConnect)
    message = str(raised.value)
    assert f"host=127.0.0.1 port={port} dbname=shop" in message
    assert f"after {RETRY_ATTEMPTS} attempts" in message and "Connection refused" in message
    assert PASSWORD not in message and "\n" not in message
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == RETRY_ATTEMPTS - 1
    assert all(r.levelno == logging.DEBUG for r in retries)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_call_that_heals_logs_one_warning(dsn: str, caplog: pytest.LogCaptureFixture, monkeypatch) -> None:
    real_connect = psycopg2.connect
    starting = "connection to server failed: FATAL:  the database system is starting up"
    failures = [psycopg2.OperationalError(starting)]

    def flaky_connect(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(psycopg2, "connect", flaky_connect)
    caplog.set_level(logging.DEBUG, logger="teguh")
    with teguh.Client(dsn, min_connections=0) as client:
        assert client.list_queues() == []
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "succeeded after 1 failed attempt" in warnings[0].getMessage()
    assert "starting up" in warnings[0].getMessage()


H = 'connection to server at "h", port 5432 failed: '
SOCKET = 'connection to server on socket "/tmp/.s.PGSQL.5432" failed: '


@pytest.mark.parametrize(
    ("message", "permanent"),
    [
        (SOCKET + 'FATAL:  database "x" does not exist', True),
        (H + 'FATAL:  password authentication failed for user "u"', True),
        (H + 'fe_sendauth: no password supplied', True),
        ('could not translate host name "db" to address: Name or service not known', True),
        (H + 'FATAL:  no pg_hba.conf entry for host "1.2.3.4"', True),
        ("server does not support SSL, but SSL was required", True),
        ('could not translate host name "db" to address: Temporary failure in name resolution', False),
        (H + 'Connection refused', False),
        (H + 'FATAL:  the database system is starting up', False),
        (H + 'FATAL:  the database system is shutting down', False),
        (H + 'FATAL:  sorry, too many clients already', False),
        (H + 'timeout expired', False),
        (H + 'Network is unreachable', False),
        ("something nobody has seen before", False),
    ],
)
def test_libpq_messages_are_classified(message: str, permanent: bool) -> None:
    assert _connect_errors.is_permanent(psycopg2.OperationalError(message)) is permanent


def test_an_unparsable_dsn_is_permanent_and_the_reason_drops_libpq_prefixes() -> None:
    assert _connect_errors.is_permanent(psycopg2.ProgrammingError("invalid dsn: missing \"=\""))
    text = 'connection to server on socket "/tmp/.s.PGSQL.5432" failed: FATAL:  role "r" does not exist\n'
    assert _connect_errors.reason(psycopg2.OperationalError(text)) == 'role "r" does not exist'
    refused = 'connection to server at "h", port 1 failed: Connection refused\n\tIs the server running?\n'
    assert _connect_errors.reason(psycopg2.OperationalError(refused)) == "Connection refused"


# -- the command line, as a user sees it -------------------------------------------------


def _teguh(tmp_path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    (tmp_path / "connapp.py").write_text("import teguh\n\napp = teguh.App(queue='jobs')\n", encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "teguh", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@COMMANDS
@pytest.mark.parametrize("case", CASES)
def test_the_cli_prints_one_line_for_a_permanent_failure(
    case: str, command: list[str], pg_server: Any, password_server: dict[str, str], tmp_path: Path
) -> None:
    dsn, says = _permanent_dsns(pg_server, password_server)[case]
    done = _teguh(tmp_path, "--dsn", dsn, *command)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("teguh: error: cannot connect to PostgreSQL (host="), lines
    assert says in lines[0]
    assert PASSWORD not in done.stderr


@COMMANDS
def test_the_cli_prints_one_summary_line_for_a_transient_failure(command: list[str], tmp_path: Path) -> None:
    port = _free_port()
    done = _teguh(tmp_path, "--dsn", f"host=127.0.0.1 port={port} dbname=shop user=u", *command)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"teguh: error: could not connect to PostgreSQL (host=127.0.0.1 port={port}")
    assert f"after {RETRY_ATTEMPTS} attempts" in lines[0]
