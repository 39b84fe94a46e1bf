"""Fixtures for the flow tests: worker threads, worker processes of `flow_app.py`, the step ledger.

The mechanics live in tests/_support (workers, processes).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _support.processes import process_log, worker_processes
from _support.workers import worker_threads

from teguh.testing import WorkerThread

from . import flow_app

__all__ = ["Q", "process_log"]

Q = flow_app.Q
HERE = Path(__file__).resolve().parent


@pytest.fixture
def ledger(dsn: str) -> flow_app.Ledger:
    """What the steps of `flow_app` did, written through their own connections."""
    book = flow_app.Ledger(dsn)
    book.create()
    return book


@pytest.fixture
def threads() -> Iterator[Callable[..., WorkerThread]]:
    """Start worker threads on queue `Q`: `threads(app, **options)`; all stopped and joined at teardown."""
    with worker_threads(None, queue=Q, shutdown_timeout=10) as running:
        yield running.start


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start `flow_app.py DSN OPTIONS_JSON` worker processes (SIGKILLed by pid at teardown if alive)."""
    with worker_processes(HERE / "flow_app.py", tmp_path) as launcher:
        yield launcher.start_with_options
