"""Workers and clients behind a real PgBouncer in transaction pooling mode.

The fixture starts the `pgbouncer` binary (Debian package `pgbouncer`) on its
own port in front of the session's PostgreSQL, with its own config file, and
stops it by pid. Without the binary these tests skip (`.ci/run` installs it).

Transaction pooling hands a server connection to a client for one transaction
only, so LISTEN through it silently never hears anything. The pool side must
work there unchanged; LISTEN needs `listen_dsn` pointing at PostgreSQL directly,
and a worker without it must notice and poll.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg2
import pytest

import teguh
from teguh import _notify
from teguh.app import App

from .conftest import Q, WorkerThread, eventually

PGBOUNCER = shutil.which("pgbouncer") or next(
    (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.path.exists(p)), None
)

pytestmark = pytest.mark.skipif(
    PGBOUNCER is None,
    reason="the pgbouncer binary is not installed (apt-get install pgbouncer; .ci/run does it)",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Bouncer:
    """A running pgbouncer: where it listens, and its admin console."""

    def __init__(self, port: int, user: str) -> None:
        self.port = port
        self.user = user

    def dsn(self, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname={dbname}"

    def admin(self, command: str) -> list[dict[str, Any]]:
        """Run a command on the admin console (`SHOW POOLS`, ...) and return its rows."""
        conn = psycopg2.connect(self.dsn("pgbouncer"))
        conn.autocommit = True  # the console accepts no transactions
        try:
            with conn.cursor() as cur:
                cur.execute(command)
                names = [d[0] for d in cur.description]
                return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        finally:
            conn.close()

    def transactions(self, dbname: str) -> int:
        """Transactions pgbouncer has pooled for `dbname` so far."""
        return sum(int(r["total_xact_count"]) for r in self.admin("show stats") if r["database"] == dbname)


@pytest.fixture(scope="module")
def pgbouncer(pg_server: Any) -> Iterator[Bouncer]:
    """pgbouncer in transaction mode on a free port, in front of the session's PostgreSQL."""
    assert PGBOUNCER is not None
    # pgbouncer refuses to run as root; run it as the owner of the server's
    # socket directory (the embedded server's own user), who can reach it.
    owner = os.stat(pg_server.host).st_uid if pg_server.host.startswith("/") else os.getuid()
    if owner == 0:
        pytest.skip("pgbouncer cannot run as root and the server's socket belongs to root")
    workdir = Path(tempfile.mkdtemp(prefix="teguh-pgbouncer-"))
    port = _free_port()
    (workdir / "userlist.txt").write_text(f'"{pg_server.user}" ""\n')
    (workdir / "pgbouncer.ini").write_text(
        f"""[databases]
* = host={pg_server.host} port={pg_server.port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir / "userlist.txt"}
admin_users = {pg_server.user}
pool_mode = transaction
default_pool_size = 20
max_client_conn = 200
logfile = {workdir / "pgbouncer.log"}
"""
    )
    for path in [workdir, *workdir.iterdir()]:
        os.chown(path, owner, -1)
    user = {"user": owner} if os.getuid() == 0 else {}
    proc = subprocess.Popen(
        [PGBOUNCER, str(workdir / "pgbouncer.ini")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        **user,  # type: ignore[arg-type]
    )
    bouncer = Bouncer(port, pg_server.user)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                bouncer.admin("show version")
                break
            except psycopg2.OperationalError:
                log = (workdir / "pgbouncer.log").read_text() if (workdir / "pgbouncer.log").exists() else ""
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"pgbouncer did not start (exit code {proc.poll()}):\n{log[-2000:]}")
                time.sleep(0.05)  # polling for readiness, with a deadline
        yield bouncer
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)  # SIGINT: pgbouncer's immediate shutdown
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def dbname(dsn: str) -> str:
    return psycopg2.extensions.parse_dsn(dsn)["dbname"]


@pytest.fixture
def bounced_app(pgbouncer: Bouncer, dbname: str) -> Iterator[App]:
    """An app whose client's pool goes through pgbouncer (no listen_dsn)."""
    application = App(pgbouncer.dsn(dbname), queue=Q)
    try:
        yield application
    finally:
        application.client.close()


def _record_app(app: App) -> tuple[list[str], threading.Event]:
    done: list[str] = []
    ran = threading.Event()

    @app.task("echo")
    def echo(params: Any, ctx: Any) -> Any:
        # steps and a durable sleep exercise checkpoints and suspension via the pool
        value = ctx.step("double", lambda: params["n"] * 2)
        if params.get("nap"):
            ctx.sleep_for("nap", 0.2)
        done.append(ctx.task_id)
        ran.set()
        return {"n": value}

    return done, ran


def test_probe_tells_direct_from_transaction_pooled(pgbouncer: Bouncer, dsn: str, dbname: str) -> None:
    with teguh.Client(pgbouncer.dsn(dbname)) as bounced, teguh.Client(dsn) as direct:
        # the pool side may go either way; what matters is where LISTEN connects
        assert _notify.probe_notify(bounced, dsn) == _notify.OK
        assert _notify.probe_notify(direct, dsn) == _notify.OK
        assert _notify.probe_notify(direct, pgbouncer.dsn(dbname), timeout=1.0) == _notify.BROKEN
        assert _notify.probe_notify(bounced, pgbouncer.dsn(dbname), timeout=1.0) == _notify.BROKEN


@pytest.mark.timeout(60)
def test_pool_through_pgbouncer_listen_direct_wakes_on_notify(
    pgbouncer: Bouncer, dsn: str, dbname: str, start_worker: Any, caplog: Any
) -> None:
    app = App(pgbouncer.dsn(dbname), queue=Q, client=teguh.Client(pgbouncer.dsn(dbname), listen_dsn=dsn))
    done, ran = _record_app(app)
    try:
        caplog.set_level(logging.WARNING, logger="teguh")
        # a 60 s poll: only a notification can start a task within seconds
        handle: WorkerThread = start_worker(app, poll_interval=60, concurrency=4)
        assert handle.worker.listener_pid is not None, "the direct LISTEN connection should be up"
        assert not [r for r in caplog.records if "LISTEN/NOTIFY does not work" in r.getMessage()]
        before = pgbouncer.transactions(dbname)
        for n in range(3):
            ran.clear()
            handle.wait_idle()
            task = app.client.spawn_task(Q, "echo", {"n": n, "nap": n == 1}, notify_done=True)
            assert ran.wait(10), "the spawn's NOTIFY did not wake the worker"
            result = app.client.wait_for_result(Q, task.task_id, timeout=10)
            assert result.state == "completed" and result.result == {"n": 2 * n}
        assert len(done) == 3
        # the claims, steps, sleeps and completions really went through pgbouncer
        assert pgbouncer.transactions(dbname) - before >= 9
    finally:
        app.client.close()


@pytest.mark.timeout(60)
def test_everything_through_pgbouncer_falls_back_to_polling(
    bounced_app: App, pgbouncer: Bouncer, dbname: str, start_worker: Any, caplog: Any
) -> None:
    done, _ = _record_app(bounced_app)
    caplog.set_level(logging.WARNING, logger="teguh")
    handle: WorkerThread = start_worker(bounced_app, poll_interval=0.5)
    warnings = [r for r in caplog.records if "LISTEN/NOTIFY does not work" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    message = warnings[0].getMessage()
    assert warnings[0].levelno == logging.WARNING
    assert "TEGUH_LISTEN_DSN" in message and "polling every 0.5 s" in message
    assert f"port={pgbouncer.port}" in message
    assert handle.worker.listener_pid is None, "no useless LISTEN connection is held"

    handle.wait_idle()
    spawned_at = time.monotonic()
    tasks = [bounced_app.client.spawn_task(Q, "echo", {"n": n, "nap": n == 0}) for n in range(3)]
    for task in tasks:
        result = bounced_app.client.wait_for_result(Q, task.task_id, timeout=15)
        assert result.state == "completed", result
    assert sorted(done) == sorted(t.task_id for t in tasks)
    # no notification can arrive: the 0.5 s poll woke it, not the default 30 s one
    assert time.monotonic() - spawned_at < 10


def test_client_calls_work_through_transaction_pooling(pgbouncer: Bouncer, dsn: str, dbname: str) -> None:
    """The client relies on no session state: every call is one transaction."""
    with teguh.Client(pgbouncer.dsn(dbname), max_connections=3, listen_dsn=dsn) as client:
        client.install_schema()  # re-running the installer through pgbouncer is fine too
        client.create_queue(Q)
        # a caller's transaction: both spawns commit together or not at all
        with client.transaction() as conn:
            first = client.spawn_task(Q, "a", {"x": 1}, conn=conn)
            client.spawn_task(Q, "b", conn=conn)
        with pytest.raises(RuntimeError), client.transaction() as conn:
            client.spawn_task(Q, "rolled-back", conn=conn)
            raise RuntimeError("roll back")
        assert client.spawn_task(Q, "a", idempotency_key="k").created
        assert not client.spawn_task(Q, "a", idempotency_key="k").created
        runs = client.claim_task(Q, "w1", claim_timeout=30, qty=10)
        assert sorted(r.task_name for r in runs) == ["a", "a", "b"]
        by_id = {r.task_id: r for r in runs}
        run = by_id[first.task_id]
        client.set_checkpoint(Q, run.task_id, "s1", {"v": 1}, run.run_id)
        assert client.get_checkpoints(Q, run.task_id, run.run_id) == {"s1": {"v": 1}}
        client.emit_event(Q, "ev", {"p": 1})
        assert client.await_event(Q, run.task_id, run.run_id, "w", "ev") == (False, {"p": 1})
        client.complete_run(Q, run.run_id, {"ok": True})
        # wait_for_result's LISTEN goes direct (listen_dsn) while reads go through pgbouncer
        assert client.wait_for_result(Q, first.task_id, timeout=5).result == {"ok": True}
        later = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(minutes=5)
        others = [r for r in runs if r.task_id != first.task_id]
        for other in others:
            client.fail_run(Q, other.run_id, {"message": "no"}, retry_at=later)
        assert client.next_due(Q) == later  # the failed ones retry later
        client.cancel_task(Q, others[0].task_id)
        assert client.get_task_result(Q, others[0].task_id).state == "cancelled"


def test_listen_dsn_comes_from_argument_then_environment(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEGUH_LISTEN_DSN", raising=False)
    assert teguh.Client(dsn).listen_dsn == dsn
    monkeypatch.setenv("TEGUH_LISTEN_DSN", "host=/elsewhere dbname=x")
    assert teguh.Client(dsn).listen_dsn == "host=/elsewhere dbname=x"
    assert teguh.Client(dsn, listen_dsn="dbname=y").listen_dsn == "dbname=y"


CLI_APP = """
import teguh

app = teguh.App(queue="jobs")


@app.task("hello")
def hello(params):
    return "hi"
"""


@pytest.mark.timeout(60)
def test_cli_worker_listen_dsn_option(pgbouncer: Bouncer, dsn: str, dbname: str, tmp_path: Path) -> None:
    (tmp_path / "cliapp.py").write_text(CLI_APP)
    log_path = tmp_path / "worker.log"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "teguh", "--dsn", pgbouncer.dsn(dbname)),
                *("worker", "--app", "cliapp:app", "--poll-interval", "60", "--listen-dsn", dsn),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env=env,
        )
    try:
        eventually(lambda: "serving queue 'jobs'" in log_path.read_text() or proc.poll() is not None, 20)
        assert proc.poll() is None, log_path.read_text()
        with teguh.Client(dsn) as client:
            # a 60 s poll: only a notification through the direct LISTEN connection is this fast
            task = client.spawn_task(Q, "hello", notify_done=True)
            assert client.wait_for_result(Q, task.task_id, timeout=15).result == "hi"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
    text = log_path.read_text()
    assert "LISTEN/NOTIFY does not work" not in text, text
    assert proc.returncode == 0, text
