"""Fixtures of the batch tests: the app of `batch_app.py`, its worker processes."""

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

from . import batch_app

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


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
    procs: list[subprocess.Popen] = []

    def start(dsn: str, **options: Any) -> subprocess.Popen:
        path = tmp_path / f"worker-{len(procs)}.log"
        log = open(path, "wb")  # noqa: SIM115 (closed at teardown)
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "batch_app.py"), dsn, json.dumps(options)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            cwd=str(REPO),
        )
        proc.log_file = log  # type: ignore[attr-defined]
        proc.log_path = path  # type: ignore[attr-defined]
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
        proc.log_file.close()  # type: ignore[attr-defined]


def process_logs(procs: list[subprocess.Popen]) -> str:
    """What the worker processes wrote (for assertion messages)."""
    return "\n".join(Path(p.log_path).read_text(errors="replace") for p in procs)  # type: ignore[attr-defined]
