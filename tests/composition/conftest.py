"""Fixtures of the composition tests: an app on the test's database, worker threads, worker processes.

Worker processes run `compose_app.py` (children, parents, a ledger of runs
written through the handlers' own connections, so a killed process's work
stays visible); threads are for the tests that need no crash.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from teguh.app import App
from teguh.testing import WorkerThread

from . import compose_app

Q = compose_app.Q
HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


@pytest.fixture
def app(dsn: str) -> Iterator[App]:
    """An `App` on the test's database, queue `Q` created, the ledger table made."""
    application = App(dsn, queue=Q)
    application.client.create_queue(Q)
    compose_app.create_ledger(dsn)
    try:
        yield application
    finally:
        application.client.close()


@pytest.fixture
def start_worker(app: App) -> Iterator[Callable[..., WorkerThread]]:
    """Start workers of an app in threads (options of `App.worker`); all are stopped at teardown."""
    running: list[WorkerThread] = []

    def start(the_app: App | None = None, **options: Any) -> WorkerThread:
        options.setdefault("poll_interval", 30)
        options.setdefault("shutdown_timeout", 10)
        options.setdefault("install_signal_handlers", False)
        handle = WorkerThread((the_app or app).worker(**options))
        running.append(handle)
        return handle.start()

    yield start
    problems = []
    for handle in running:
        if not handle.stop():
            handle.stop(5, force=True)
            problems.append(f"worker {handle.worker.worker_id} did not stop in time")
        handle.worker.client.close()
        if handle.error is not None:
            problems.append(f"worker.run() raised {handle.error!r}")
    assert not problems, problems


@pytest.fixture
def spawn_process(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start `compose_app.py DSN OPTIONS_JSON` as a worker process (SIGKILLed at teardown if alive)."""
    procs: list[subprocess.Popen] = []

    def start(dsn: str, **options: Any) -> subprocess.Popen:
        path = tmp_path / f"worker-{len(procs)}.log"
        log = open(path, "wb")  # noqa: SIM115 (closed at teardown)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "compose_app.py"), dsn, json.dumps(options)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(REPO),
        )
        proc.log_file = log  # type: ignore[attr-defined]
        proc.log_path = path  # type: ignore[attr-defined]
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        proc.log_file.close()  # type: ignore[attr-defined]


def process_log(proc: subprocess.Popen) -> str:
    """What a worker process wrote so far (for assertion messages)."""
    return Path(proc.log_path).read_text(errors="replace")  # type: ignore[attr-defined]
