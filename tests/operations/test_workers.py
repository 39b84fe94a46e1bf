"""The worker registry: rows written at start, refreshed by heartbeats, gone at a stop or a SIGKILL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg2
import pytest
from _support.polling import eventually
from _support.processes import worker_processes
from _support.workers import start_worker

import teguh

from .conftest import Q

HERE = Path(__file__).resolve().parent


def _rows(dsn: str) -> list[tuple[str, int]]:
    """Every row of teguh.workers, live or expired: (worker_id, pid)."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("select worker_id, pid from teguh.workers order by worker_id")
            return cur.fetchall()
    finally:
        conn.close()


def test_a_worker_registers_refreshes_and_leaves(app: teguh.App, dsn: str) -> None:
    release = threading.Event()
    started = threading.Event()

    @app.task("block")
    def block(params: object, ctx: teguh.TaskContext) -> None:
        started.set()
        release.wait(30)

    worker = start_worker(app, worker_id="reg-1", concurrency=3, claim_timeout=3, heartbeat_interval=0.2)
    try:
        (info,) = app.client.list_workers()
        assert isinstance(info, teguh.WorkerInfo)
        assert (info.worker_id, info.host, info.pid, info.queues, info.concurrency) == (
            "reg-1",
            socket.gethostname(),
            os.getpid(),
            (Q,),
            3,
        )
        assert (info.version, info.app_version, info.running) == (teguh.__version__, "7.1", 0)
        assert info.started_at <= info.last_seen_at < info.expires_at
        app.spawn_task("block")
        assert started.wait(15)
        busy = eventually(lambda: [w for w in app.client.list_workers() if w.running == 1], timeout=15)
        assert busy[0].instance_id == info.instance_id and busy[0].last_seen_at > info.last_seen_at
        assert busy[0].started_at == info.started_at
    finally:
        release.set()
        assert worker.stop(), "the worker did not stop"
    worker.raise_error()
    assert app.client.list_workers() == [] and _rows(dsn) == []


def test_a_worker_whose_leases_never_expire_registers_too(app: teguh.App, dsn: str) -> None:
    worker = start_worker(app, worker_id="forever", claim_timeout=0)
    try:
        assert [w.worker_id for w in app.client.list_workers()] == ["forever"]
    finally:
        assert worker.stop()
    assert _rows(dsn) == []


def test_two_workers_of_one_process_have_a_row_each(app: teguh.App) -> None:
    first = start_worker(app, claim_timeout=3)
    second = start_worker(app, claim_timeout=3)
    try:
        workers = app.client.list_workers()
        assert len({w.instance_id for w in workers}) == 2
        assert {w.worker_id for w in workers} == {first.worker.worker_id}
    finally:
        assert first.stop() and second.stop()
    assert app.client.list_workers() == []


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start `proc_worker.py DSN OPTIONS` subprocesses; any still alive is SIGKILLed at teardown."""
    with worker_processes(HERE / "proc_worker.py", tmp_path) as launcher:
        yield launcher.start_with_options


@pytest.mark.timeout(90)
def test_a_sigkilled_worker_disappears_after_missed_beats(
    client: teguh.Client, dsn: str, processes: Callable[..., subprocess.Popen]
) -> None:
    options = {"claim_timeout": 3, "heartbeat_interval": 0.3, "poll_interval": 5}
    procs = {name: processes(dsn, worker_id=name, **options) for name in ("keep", "kill", "term")}

    def registered() -> bool:
        for proc in procs.values():
            assert proc.poll() is None, f"a worker process exited with {proc.returncode}"
        return {(w.worker_id, w.pid) for w in client.list_workers()} == {
            (name, proc.pid) for name, proc in procs.items()
        }

    eventually(registered, timeout=30)
    assert {w.app_version for w in client.list_workers()} == {"proc-1"}

    os.kill(procs["kill"].pid, signal.SIGKILL)
    assert procs["kill"].wait(10) == -signal.SIGKILL
    # hidden once expired, then deleted by a beat of another worker
    eventually(lambda: "kill" not in {w.worker_id for w in client.list_workers()}, timeout=20)
    eventually(lambda: [name for name, _ in _rows(dsn)] == ["keep", "term"], timeout=20)

    # a clean stop deletes the row at once (no expiry to wait for)
    os.kill(procs["term"].pid, signal.SIGTERM)
    assert procs["term"].wait(20) == 0
    assert [name for name, _ in _rows(dsn)] == ["keep"]
    assert [w.worker_id for w in client.list_workers()] == ["keep"]
