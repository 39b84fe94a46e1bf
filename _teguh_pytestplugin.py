"""teguh's pytest plugin: `teguh_*` fixtures (registered through the `pytest11` entry point).

It loads in every pytest run where teguh is installed, so it imports nothing
at load time (teguh and psycopg2 are imported when a fixture is first used)
and defines only fixtures whose names start with `teguh_`. A top-level module,
not `teguh.something`, because importing any submodule would import `teguh`
itself (the pattern of hypothesis' `_hypothesis_pytestplugin`).

Fixtures (override `teguh_dsn` or `teguh_app` in your conftest.py):

* `teguh_dsn`: a fresh database with the schema installed, dropped afterwards
  (on the server of `TEGUH_TEST_DSN`, else `TEGUH_DSN` / `DATABASE_URL` /
  `PG*`, else the embedded PostgreSQL).
* `teguh_app`: a `teguh.App` on `teguh_dsn` (override it to return yours).
* `teguh_eager`: `teguh_app` in eager mode; yields the `EagerRunner`.
* `teguh_clock`: a `FakeClock` on `teguh_app` (and its workers).
* `teguh_worker`: a `Worker` of `teguh_app`, running in a thread.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def teguh_dsn() -> Iterator[str]:
    """The DSN of a fresh database with the teguh schema installed (dropped afterwards)."""
    from teguh.testing import temporary_database

    with temporary_database(os.environ.get("TEGUH_TEST_DSN") or None) as dsn:
        yield dsn


@pytest.fixture
def teguh_app(teguh_dsn: str) -> Iterator[Any]:
    """A `teguh.App` on `teguh_dsn` with queue "default"; override to return your app."""
    import teguh

    app = teguh.App(teguh_dsn)
    try:
        yield app
    finally:
        app.client.close()


@pytest.fixture
def teguh_eager(teguh_app: Any) -> Iterator[Any]:
    """`teguh_app` in eager mode: spawns run inline. Yields the `teguh.testing.EagerRunner`."""
    from teguh.testing import eager

    with eager(teguh_app) as runner:
        yield runner


@pytest.fixture
def teguh_clock(teguh_app: Any) -> Iterator[Any]:
    """A `teguh.testing.FakeClock` for `teguh_app`'s client and workers."""
    from teguh.testing import FakeClock

    with FakeClock(teguh_app) as clock:
        yield clock


@pytest.fixture
def teguh_worker(teguh_app: Any) -> Iterator[Any]:
    """A `teguh.Worker` of `teguh_app` on its queue, running in a thread until teardown.

    Request `teguh_clock` before it (in the test's arguments) for a worker on fake time.
    """
    from teguh.testing import worker_thread

    with worker_thread(teguh_app, poll_interval=5, shutdown_timeout=10) as worker:
        yield worker
