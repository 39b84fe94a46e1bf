"""Shared helpers for the worker tests: real PostgreSQL, real threads, no sleeps.

* `eventually(check, timeout)` polls a condition with a deadline.
* `start_worker(**options)` runs a `Worker` of the test's `app` in a thread,
  waits until it listens, and stops and joins it at teardown.
* `WorkerThread` (`teguh.testing`'s) `.wait_idle()` waits on `Worker.idle`, so a
  test can prove that only a notification (not a claim already under way) wakes it.
* `spawn_process(...)` starts `proc_app.py` in a subprocess and kills it (by
  pid) at teardown if it is still alive.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _support.polling import eventually  # noqa: F401 (the worker tests import it from here)

from teguh.app import App
from teguh.testing import WorkerThread

from . import proc_app

Q = proc_app.Q
HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

JOIN_TIMEOUT = 20.0
"""Seconds a stopping worker thread may take at teardown before it is forced."""


@pytest.fixture
def app(dsn: str) -> Iterator[App]:
    """An `App` on the test's database whose default queue is `Q`."""
    application = App(dsn, queue=Q)
    try:
        yield application
    finally:
        application.client.close()


@pytest.fixture
def client(app: App) -> Any:
    """The app's client, with queue `Q` created."""
    app.client.create_queue(Q)
    return app.client


@pytest.fixture
def start_worker(app: App) -> Iterator[Callable[..., WorkerThread]]:
    """Start workers in threads: `start_worker(**options)` (options of `app.worker`).

    Defaults: `poll_interval=30` (so only notifications and due moments wake an
    idle worker) and `shutdown_timeout=10`. Every worker is stopped and joined at
    teardown, forced if it does not end in time, and its client is closed.
    """
    running: list[WorkerThread] = []

    def start(the_app: App | None = None, **options: Any) -> WorkerThread:
        options.setdefault("poll_interval", 30)
        options.setdefault("shutdown_timeout", 10)
        worker = (the_app or app).worker(**options)
        handle = WorkerThread(worker)
        running.append(handle)
        return handle.start()

    yield start
    problems = []
    for handle in running:
        if not handle.stop():
            handle.stop(5, force=True)
            problems.append(f"worker {handle.worker.worker_id} did not stop within {JOIN_TIMEOUT} s")
        handle.worker.client.close()
        if handle.error is not None:
            problems.append(f"worker.run() raised {handle.error!r}")
    assert not problems, problems


@pytest.fixture
def ledger(dsn: str) -> proc_app.Ledger:
    """The executions table written by handlers through their own connections."""
    proc_app.create_ledger(dsn)
    return proc_app.Ledger(dsn)


@pytest.fixture
def spawn_process(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start `proc_app.py DSN [OPTIONS_JSON]` in a subprocess (killed at teardown)."""
    procs: list[subprocess.Popen] = []

    def start(dsn: str, **options: Any) -> subprocess.Popen:
        import json

        log = open(tmp_path / f"worker-{len(procs)}.log", "wb")  # noqa: SIM115 (closed at teardown)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "proc_app.py"), dsn, json.dumps(options)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(REPO),
        )
        proc.log_file = log  # type: ignore[attr-defined]
        proc.log_path = tmp_path / f"worker-{len(procs)}.log"  # type: ignore[attr-defined]
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        proc.log_file.close()  # type: ignore[attr-defined]


def process_log(proc: subprocess.Popen) -> str:
    """What a `spawn_process` subprocess wrote so far (for assertion messages)."""
    return Path(proc.log_path).read_text(errors="replace")  # type: ignore[attr-defined]
