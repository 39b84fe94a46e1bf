"""Shared helpers for the worker tests: real PostgreSQL, real threads, no sleeps.

* `eventually(check, timeout)` polls a condition with a deadline.
* `start_worker(**options)` runs a `Worker` of the test's `app` in a thread,
  waits until it listens, and stops and joins it at teardown.
* `WorkerThread` (`teguh.testing`'s) `.wait_idle()` waits on `Worker.idle`, so a
  test can prove that only a notification (not a claim already under way) wakes it.
* `spawn_process(...)` starts `proc_app.py` in a subprocess and kills it (by
  pid) at teardown if it is still alive.

The mechanics live in tests/_support (workers, processes, apps, ledger); this
file keeps the worker tests' defaults.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _support.apps import queue_app
from _support.polling import eventually
from _support.processes import REPO, process_log, worker_processes
from _support.workers import worker_threads

from teguh.app import App
from teguh.testing import WorkerThread

from . import proc_app

__all__ = ["Q", "REPO", "WorkerThread", "eventually", "process_log"]

Q = proc_app.Q
HERE = Path(__file__).resolve().parent


@pytest.fixture
def app(dsn: str) -> Iterator[App]:
    """An `App` on the test's database whose default queue is `Q`."""
    with queue_app(dsn, Q, create=False) as application:
        yield application


@pytest.fixture
def client(app: App) -> Any:
    """The app's client, with queue `Q` created."""
    app.client.create_queue(Q)
    return app.client


@pytest.fixture
def start_worker(app: App) -> Iterator[Callable[..., WorkerThread]]:
    """Start workers in threads: `start_worker(the_app=None, **options)` (options of `app.worker`).

    Defaults: `poll_interval=30` (so only notifications and due moments wake an
    idle worker) and `shutdown_timeout=10`. Every worker is stopped and joined at
    teardown, forced if it does not end in time, and its client is closed.
    """
    with worker_threads(app, poll_interval=30, shutdown_timeout=10) as threads:
        yield threads.start


@pytest.fixture
def ledger(dsn: str) -> proc_app.Ledger:
    """The executions table written by handlers through their own connections."""
    proc_app.create_ledger(dsn)
    return proc_app.Ledger(dsn)


@pytest.fixture
def spawn_process(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start `proc_app.py DSN [OPTIONS_JSON]` in a subprocess (killed at teardown)."""
    with worker_processes(HERE / "proc_app.py", tmp_path) as processes:
        yield processes.start_with_options
