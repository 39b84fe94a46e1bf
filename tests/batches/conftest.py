"""Fixtures of the batch tests: the app of `batch_app.py`, its worker processes.

The mechanics live in tests/_support (processes).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _support import processes
from _support.processes import process_logs

from teguh.app import App

from . import batch_app

__all__ = ["process_logs"]

HERE = Path(__file__).resolve().parent


@pytest.fixture
def app(dsn: str) -> Iterator[App]:
    """`batch_app`'s app on the test's database, its queue created, its ledger table too."""
    application = batch_app.build_app(dsn)
    application.client.create_queue(batch_app.Q)
    batch_app.create_ledger(dsn)
    try:
        yield application
    finally:
        application.client.close()


@pytest.fixture
def worker_processes(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start `batch_app.py DSN OPTIONS` subprocesses; SIGTERM (then SIGKILL) at teardown."""
    with processes.worker_processes(HERE / "batch_app.py", tmp_path, grace=15) as launcher:
        yield launcher.start_with_options
