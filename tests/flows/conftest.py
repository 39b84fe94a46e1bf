"""Fixtures for the flow tests: worker threads, worker processes of `flow_app.py`, the step ledger."""

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

import teguh
from teguh.testing import WorkerThread

from . import flow_app

Q = flow_app.Q
HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


@pytest.fixture
def ledger(dsn: str) -> flow_app.Ledger:
    """What the steps of `flow_app` did, written through their own connections."""
    book = flow_app.Ledger(dsn)
    book.create()
    return book


@pytest.fixture
def threads() -> Iterator[Callable[..., WorkerThread]]:
    """Start worker threads: `threads(app, **options)`; all stopped and joined at teardown."""
    running: list[WorkerThread] = []

    def start(app: teguh.App, **options: Any) -> WorkerThread:
        options.setdefault("install_signal_handlers", False)
        options.setdefault("shutdown_timeout", 10)
        handle = WorkerThread(app.worker(Q, **options))
        running.append(handle)
        return handle.start()

    yield start
    problems = []
    for handle in running:
        if not handle.stop():
            handle.stop(5, force=True)
            problems.append(f"worker {handle.worker.worker_id} did not stop")
        if handle.error is not None:
            problems.append(f"worker.run() raised {handle.error!r}")
    assert not problems, problems


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start `flow_app.py DSN OPTIONS_JSON` worker processes (SIGKILLed by pid at teardown if alive)."""
    procs: list[subprocess.Popen] = []

    def start(dsn: str, **options: Any) -> subprocess.Popen:
        path = tmp_path / f"worker-{len(procs)}.log"
        log = open(path, "wb")  # noqa: SIM115 (closed at teardown)
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "flow_app.py"), dsn, json.dumps(options)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            cwd=str(REPO),
        )
        proc.log_file, proc.log_path = log, path  # type: ignore[attr-defined]
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
