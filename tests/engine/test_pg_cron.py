"""`teguh cron start|stop` against a real pg_cron, with the ticker firing for real.

The fixture initdb's a throwaway Debian PostgreSQL 15 cluster (as the
`postgres` user when run as root) in a temporary directory, on its own port,
with `shared_preload_libraries = 'pg_cron'`, and stops it by pid. The tests
skip when /usr/lib/postgresql/15/bin or pg_cron (Debian package
`postgresql-15-cron`) is absent; `.ci/run` installs both.

No worker runs here: whatever wakes a task was done by the ticker pg_cron ran.
pg_cron before 1.5 schedules by the minute, so the firing test may wait up to
a minute for the next tick.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from click.testing import CliRunner

import teguh
from teguh.cli import main

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_CRON_SO = Path("/usr/lib/postgresql/15/lib/pg_cron.so")
CRON_DB = "teguh_cron"
Q = "cronq"


def _skip_reason() -> str | None:
    if not (PG_BIN / "initdb").exists():
        return f"Debian PostgreSQL 15 is not installed ({PG_BIN} missing; apt-get install postgresql-15)"
    if not PG_CRON_SO.exists():
        return f"pg_cron is not installed ({PG_CRON_SO} missing; apt-get install postgresql-15-cron)"
    if os.getuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root but there is no `postgres` user to run PostgreSQL 15 as"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, port: int) -> None:
        self.port = port

    def dsn(self, dbname: str = CRON_DB) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    def connect(self, dbname: str = CRON_DB) -> Any:
        conn = psycopg2.connect(self.dsn(dbname))
        conn.autocommit = True
        return conn


@pytest.fixture(scope="module")
def cron_cluster() -> Iterator[Cluster]:
    """A PostgreSQL 15 cluster with pg_cron preloaded, teguh installed in `teguh_cron`."""
    # PostgreSQL refuses to run as root: run it as `postgres`, which must own the directory.
    run_as: dict[str, Any] = {}
    if os.getuid() == 0:
        entry = pwd.getpwnam("postgres")
        run_as = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    workdir = Path(tempfile.mkdtemp(prefix="teguh-pgcron-"))
    data = workdir / "data"
    if run_as:
        os.chown(workdir, run_as["user"], run_as["group"])
    subprocess.run(
        [
            str(PG_BIN / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "--no-locale",
        ],
        check=True,
        capture_output=True,
        cwd=workdir,
        **run_as,
    )
    port = _free_port()
    log = open(workdir / "postgres.log", "wb")  # noqa: SIM115 (closed at teardown)
    proc = subprocess.Popen(
        [
            str(PG_BIN / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            str(workdir),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "shared_preload_libraries=pg_cron",
            "-c",
            f"cron.database_name={CRON_DB}",
            # pg_cron runs each job over libpq; point it where this cluster listens
            "-c",
            "cron.host=127.0.0.1",
            "-c",
            "fsync=off",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
        **run_as,
    )
    cluster = Cluster(port)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                cluster.connect("postgres").close()
                break
            except psycopg2.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    text = (workdir / "postgres.log").read_text(errors="replace")
                    pytest.fail(f"PostgreSQL 15 did not start (exit code {proc.poll()}):\n{text[-2000:]}")
                time.sleep(0.1)  # polling for readiness, with a deadline
        conn = cluster.connect("postgres")
        with conn.cursor() as cur:
            cur.execute(f"create database {CRON_DB}")
        conn.close()
        teguh.install(cluster.dsn())
        conn = cluster.connect()
        with conn.cursor() as cur:
            cur.execute("create extension pg_cron")
        conn.close()
        yield cluster
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)  # fast shutdown
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _jobs(conn: Any) -> dict[str, tuple[str, str, str]]:
    with conn.cursor() as cur:
        cur.execute("select jobname, schedule, command, database from cron.job order by jobname")
        return {name: (schedule, command, database) for name, schedule, command, database in cur.fetchall()}


def _cron(cluster: Cluster, command: str) -> Any:
    result = CliRunner().invoke(main, ["--dsn", cluster.dsn(), "cron", command])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def cron_conn(cron_cluster: Cluster) -> Iterator[Any]:
    conn = cron_cluster.connect()
    try:
        yield conn
    finally:
        _cron(cron_cluster, "stop")
        with conn.cursor() as cur:
            cur.execute("delete from cron.job_run_details")
            cur.execute("select teguh.drop_queue(%s)", (Q,))
        conn.close()


def _expected_ticker_schedule(conn: Any) -> str:
    with conn.cursor() as cur:
        cur.execute("select extversion from pg_extension where extname = 'pg_cron'")
        version = cur.fetchone()[0]
    major, minor = (int(x) for x in version.split("-")[0].split(".")[:2])
    # second-granularity schedules arrived in pg_cron 1.5
    return "10 seconds" if (major, minor) >= (1, 5) else "* * * * *"


def test_cron_start_schedules_and_stop_removes(cron_cluster: Cluster, cron_conn: Any) -> None:
    result = _cron(cron_cluster, "start")
    assert "pg_cron jobs scheduled" in result.output
    _cron(cron_cluster, "start")  # again: the jobs are replaced, not duplicated
    jobs = _jobs(cron_conn)
    assert jobs == {
        "teguh-cleanup": ("17 3 * * *", "select * from teguh.cleanup_all_queues()", CRON_DB),
        "teguh-ticker": (_expected_ticker_schedule(cron_conn), "select teguh.ticker()", CRON_DB),
    }
    result = _cron(cron_cluster, "stop")
    assert "pg_cron jobs removed" in result.output
    assert _jobs(cron_conn) == {}


@pytest.mark.timeout(180)
def test_pg_cron_ticker_wakes_sleepers_delayed_tasks_and_expired_leases(
    cron_cluster: Cluster, cron_conn: Any
) -> None:
    with teguh.Client(cron_cluster.dsn()) as client:
        client.create_queue(Q)
        # a task that goes to sleep for a second (no worker will ever poll for it)
        sleeper = client.spawn_task(Q, "sleeper")
        (run,) = client.claim_task(Q, "test", claim_timeout=300)
        should_suspend, _ = client.sleep_run(Q, run.run_id, "nap", duration=1)
        assert should_suspend
        # a task whose worker "crashed": a 1 s lease nobody extends
        crashed = client.spawn_task(Q, "crashed")
        (lost,) = client.claim_task(Q, "test", claim_timeout=1)
        assert lost.task_id == crashed.task_id
        # a task spawned to start in a second
        delayed = client.spawn_task(Q, "delayed", available_at=_db_now(cron_conn) + timedelta(seconds=1))
        # from here on nothing but pg_cron touches the queue
        _cron(cron_cluster, "start")

        def states() -> dict[str, tuple[str, bool]]:
            with cron_conn.cursor() as cur:
                cur.execute(f"select task_id::text, state, available_at is null from teguh.t_{Q}")
                return {task_id: (state, ready) for task_id, state, ready in cur.fetchall()}

        assert states()[sleeper.task_id][0] == "sleeping"
        assert states()[crashed.task_id][0] == "running"
        deadline = time.monotonic() + 150  # a minute-granularity schedule: at most ~1 min + the run
        want = {
            sleeper.task_id: ("pending", True),
            crashed.task_id: ("pending", True),
            delayed.task_id: ("pending", True),
        }
        while states() != want:
            assert time.monotonic() < deadline, f"pg_cron's ticker did not wake the tasks: {states()}"
            time.sleep(0.5)  # polling for the cron tick, with a deadline

        with cron_conn.cursor() as cur:
            cur.execute(
                "select d.status, d.command from cron.job_run_details d join cron.job j using (jobid) "
                "where j.jobname = 'teguh-ticker'"
            )
            runs = cur.fetchall()
        assert runs and all(status == "succeeded" for status, _ in runs), runs
        # the crashed run's attempt counted; the tasks are claimable now, nothing else is due
        claimed = {r.task_id: r for r in client.claim_task(Q, "after", claim_timeout=30, qty=10)}
        assert set(claimed) == {sleeper.task_id, crashed.task_id, delayed.task_id}
        assert claimed[crashed.task_id].attempt == 2
        assert claimed[sleeper.task_id].attempt == 1


def _db_now(conn: Any) -> Any:
    with conn.cursor() as cur:
        cur.execute("select now()")
        return cur.fetchone()[0]


def test_cron_start_in_another_database_names_the_cron_database(
    cron_cluster: Cluster, cron_conn: Any
) -> None:
    conn = cron_cluster.connect("postgres")
    with conn.cursor() as cur:
        cur.execute("drop database if exists teguh_other")
        cur.execute("create database teguh_other")
    try:
        teguh.install(cron_cluster.dsn("teguh_other"))
        result = CliRunner().invoke(main, ["--dsn", cron_cluster.dsn("teguh_other"), "cron", "start"])
        assert result.exit_code == 0, result.output
        assert (
            f'pg_cron runs in database "{CRON_DB}" (cron.database_name), not in "teguh_other"'
            in result.output
        )
        assert "set cron.database_name = 'teguh_other'" in result.output
        assert _jobs(cron_conn) == {}
    finally:
        with conn.cursor() as cur:
            cur.execute("drop database if exists teguh_other")
        conn.close()
