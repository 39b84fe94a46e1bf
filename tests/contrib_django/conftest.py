"""A real Django project (contrib_django.djproject) on the session's PostgreSQL.

Django is configured once per process (`django.setup()`), so the fixtures
switch its database per test instead: `django_db` clones a template database
that `manage.py migrate` built once (Django's tables plus the teguh schema,
installed by teguh's own migration), points `DATABASES["default"]` and the
teguh app at the clone, and drops it afterwards.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pytest_postgresql.janitor import DatabaseJanitor

django = pytest.importorskip("django")

from conftest import PgServer, _CloningJanitor  # noqa: E402  (tests/conftest.py)

# Set up at import, before test modules (which import models) are collected;
# nothing connects until a fixture points the project at a database.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "contrib_django.djproject.settings")
django.setup()

TEMPLATE = "teguh_django_tmpl"
_counter = iter(range(1_000_000))


def _point_django_at(dbname: str, server: PgServer | None = None) -> None:
    """Make Django and the teguh app use `dbname` from now on (in every thread)."""
    from django.conf import settings
    from django.db import connections

    from teguh.contrib.django import get_app

    connections.close_all()
    where = {"NAME": dbname}
    if server is not None:
        where.update(HOST=server.host, PORT=str(server.port), USER=server.user)
    settings.DATABASES["default"].update(where)
    connections["default"].settings_dict.update(where)
    app = get_app()
    with app._client_lock:
        if app._client is not None:
            app._client.close()
            app._client = None


@pytest.fixture(scope="session")
def django_project(pg_server: PgServer) -> Iterator[PgServer]:
    """Django set up on the test server, with a migrated template database."""
    janitor = DatabaseJanitor(
        user=pg_server.user, host=pg_server.host, port=pg_server.port, dbname=TEMPLATE, as_template=True
    )
    janitor.drop()
    janitor.init()
    _point_django_at(TEMPLATE, pg_server)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    _point_django_at("postgres")
    try:
        yield pg_server
    finally:
        _point_django_at("postgres")
        janitor.drop()


@pytest.fixture
def django_db(django_project: PgServer) -> Iterator[str]:
    """A fresh migrated database for this test; returns its DSN."""
    dbname = f"teguh_dj_{os.getpid()}_{next(_counter)}"
    janitor = _CloningJanitor(
        user=django_project.user,
        host=django_project.host,
        port=django_project.port,
        dbname=dbname,
        template_dbname=TEMPLATE,
    )
    janitor.init()
    _point_django_at(dbname)
    try:
        yield django_project.dsn(dbname)
    finally:
        _point_django_at("postgres")
        janitor.drop()


class _Running:
    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        try:
            self.worker.run()
        except BaseException as exc:  # reported at teardown
            self.error = exc


@pytest.fixture
def django_worker(django_db: str) -> Iterator[Callable[..., Any]]:
    """`django_worker(queue=None, **options)`: the project's app's worker in a thread, stopped at teardown."""
    from teguh.contrib.django import get_app

    running: list[_Running] = []

    def start(queue: str | None = None, **options: Any) -> Any:
        options.setdefault("poll_interval", 30)
        handle = _Running(get_app().worker(queue, **options))
        running.append(handle)
        handle.thread.start()
        assert handle.worker.started.wait(15), "worker did not start"
        return handle.worker

    yield start
    for handle in running:
        handle.worker.stop()
        handle.thread.join(20)
        assert not handle.thread.is_alive(), "worker did not stop"
        handle.worker.client.close()
        assert handle.error is None, handle.error
