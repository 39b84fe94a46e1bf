"""Fixtures of the composition tests: an app on the test's database, worker threads, worker processes.

Worker processes run `compose_app.py` (children, parents, a ledger of runs
written through the handlers' own connections, so a killed process's work
stays visible); threads are for the tests that need no crash. The mechanics
live in tests/_support.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _support.apps import queue_app
from _support.processes import process_log, worker_processes
from _support.workers import worker_threads

from teguh.app import App
from teguh.testing import WorkerThread

from . import compose_app

__all__ = ["Q", "process_log"]

Q = compose_app.Q
HERE = Path(__file__).resolve().parent


@pytest.fixture
def app(dsn: str) -> Iterator[App]:
    """An `App` on the test's database, queue `Q` created, the ledger table made."""
    with queue_app(dsn, Q) as application:
        compose_app.create_ledger(dsn)
        yield application


@pytest.fixture
def start_worker(app: App) -> Iterator[Callable[..., WorkerThread]]:
    """Start workers of an app in threads (options of `App.worker`); all are stopped at teardown."""
    with worker_threads(app, poll_interval=30, shutdown_timeout=10) as threads:
        yield threads.start


@pytest.fixture
def spawn_process(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start `compose_app.py DSN OPTIONS_JSON` as a worker process (SIGKILLed at teardown if alive)."""
    with worker_processes(HERE / "compose_app.py", tmp_path) as processes:
        yield processes.start_with_options
