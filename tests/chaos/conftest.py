"""Fixtures of the fault-injection tests (marker `chaos`; the full figures: `chaos_long`).

* `chaos_dsn`: the test's database with queue `jobs` and the ledger installed.
* `procs(dsn, options, env=None)`: starts a `chaos_app.py` worker process,
  SIGKILLed (by pid) at teardown if still running.
* `supervise(dsn, n, options, env=None)`: a `Supervisor`, stopped at teardown.
* `in_process_worker(dsn, **options)`: a worker of the same app in a thread of
  the test process (a rescuer that needs no process start-up), stopped at teardown.
* `own_server` (tests/conftest.py): a PostgreSQL of the test's own, for restarts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from teguh.testing import worker_thread
from teguh.worker import Worker

from . import chaos_app, harness


@pytest.fixture
def chaos_dsn(dsn: str) -> str:
    harness.install_ledger(dsn)
    return dsn


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Callable[..., harness.WorkerProcess]]:
    started: list[harness.WorkerProcess] = []

    def start(dsn: str, options: dict[str, Any], env: dict[str, str] | None = None) -> harness.WorkerProcess:
        wp = harness.WorkerProcess(dsn, options, tmp_path / f"proc-{len(started)}.log", env)
        started.append(wp)
        return wp

    yield start
    for wp in started:
        wp.kill()


@pytest.fixture
def supervise(tmp_path: Path) -> Iterator[Callable[..., harness.Supervisor]]:
    running: list[harness.Supervisor] = []

    def start(dsn: str, n: int, options: dict[str, Any], env: Any = None) -> harness.Supervisor:
        sup = harness.Supervisor(dsn, n, options, tmp_path, env).start()
        running.append(sup)
        return sup

    yield start
    for sup in running:
        sup.stop(timeout=5)


class InProcessWorker:
    """A chaos-app worker run by `teguh.testing.worker_thread`; `stop()` ends it early."""

    def __init__(self, worker: Worker, running: contextlib.ExitStack) -> None:
        self.worker = worker
        self._running = running

    def stop(self) -> None:
        self._running.close()  # idempotent


@pytest.fixture
def in_process_worker() -> Iterator[Callable[..., InProcessWorker]]:
    with contextlib.ExitStack() as teardown:

        def start(dsn: str, **options: Any) -> InProcessWorker:
            app = chaos_app.build_app(dsn)
            teardown.callback(app.client.close)
            running = contextlib.ExitStack()
            handle = InProcessWorker(running.enter_context(worker_thread(app, **options)), running)
            teardown.callback(handle.stop)
            return handle

        yield start


@pytest.fixture
def proxy(pg_server: Any) -> Iterator[Any]:
    """A `Proxy` to the session's PostgreSQL (its unix socket); `proxy.dsn(dbname, user)`."""
    from .proxy import Proxy

    with Proxy(f"{pg_server.host}/.s.PGSQL.{pg_server.port}") as p:
        yield p
