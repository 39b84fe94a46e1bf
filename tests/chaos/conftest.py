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

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from teguh.app import App
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


class WorkerThread:
    """A `Worker` of the chaos app running in a daemon thread of the test process."""

    def __init__(self, worker: Worker, app: App) -> None:
        self.worker = worker
        self.app = app
        self.thread = threading.Thread(target=worker.run, name="chaos-worker", daemon=True)

    def start(self) -> WorkerThread:
        self.thread.start()
        if not self.worker.started.wait(30):
            raise AssertionError("in-process worker did not start within 30 s")
        return self

    def stop(self) -> None:
        self.worker.stop(force=True)
        self.thread.join(30)
        self.worker.client.close()
        self.app.client.close()


@pytest.fixture
def in_process_worker() -> Iterator[Callable[..., WorkerThread]]:
    running: list[WorkerThread] = []

    def start(dsn: str, **options: Any) -> WorkerThread:
        options.setdefault("install_signal_handlers", False)
        app = chaos_app.build_app(dsn)
        handle = WorkerThread(app.worker(**options), app).start()
        running.append(handle)
        return handle

    yield start
    for handle in running:
        handle.stop()


@pytest.fixture
def proxy(pg_server: Any) -> Iterator[Any]:
    """A `Proxy` to the session's PostgreSQL (its unix socket); `proxy.dsn(dbname, user)`."""
    from .proxy import Proxy

    with Proxy(f"{pg_server.host}/.s.PGSQL.{pg_server.port}") as p:
        yield p
