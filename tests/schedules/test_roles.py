"""Schedules under the least-privilege roles: a worker role fires, a producer reads, an admin operates."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest

import teguh
from teguh import App, PermissionDenied
from teguh.testing import WorkerThread

from .conftest import Q, eventually, tasks_of


@pytest.fixture
def role_dsn(dsn: str) -> Iterator[Any]:
    """`role_dsn(kind)`: a login role granted `kind` (producer, worker, admin), dropped at the end."""
    admin = psycopg2.connect(dsn)
    admin.autocommit = True
    made: list[str] = []

    def make(kind: str) -> str:
        name = f"tg_sched_{kind}_{uuid.uuid4().hex[:8]}"
        with admin.cursor() as cur:
            cur.execute(f'create role "{name}" login nosuperuser')
            cur.execute(f"select teguh.grant_{kind}(%s)", (name,))
        made.append(name)
        return f"{dsn} user={name}"

    yield make
    with admin.cursor() as cur:
        for name in made:
            cur.execute("select pg_terminate_backend(pid) from pg_stat_activity where usename = %s", (name,))
            cur.execute(f'drop owned by "{name}"')
            cur.execute(f'drop role "{name}"')
    admin.close()


def test_roles(app: App, role_dsn: Any) -> None:
    worker_app = App(role_dsn("worker"), queue=Q)
    worker_app.task("tick")(lambda params: params)
    worker_app.schedule("beat", "tick", every=1)
    producer = teguh.Client(role_dsn("producer"))
    admin = teguh.Client(role_dsn("admin"))
    handle = WorkerThread(worker_app.worker(poll_interval=30, install_signal_handlers=False))
    try:
        handle.start()
        eventually(lambda: tasks_of(app, "beat"), timeout=10, what="the worker role fired the schedule")
        assert [s.name for s in producer.list_schedules()] == ["beat"]
        with pytest.raises(PermissionDenied):
            producer.pause_schedule("beat")
        admin.pause_schedule("beat")
        assert admin.list_schedules()[0].paused
        assert admin.trigger_schedule("beat").created
    finally:
        handle.stop()
        for client in (producer, admin, worker_app.client, handle.worker.client):
            client.close()
