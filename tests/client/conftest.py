"""Fixtures for the Python client tests: a `Client` per test on its own database.

Time-dependent cases pin `teguh.fake_now` on the `db` connection and pass that
connection to the client with `conn=`, so nothing waits on the wall clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from _support.polling import eventually  # noqa: F401 (used by the tests here)

import teguh

Q = "jobs"
BASE = datetime(2024, 4, 1, 10, 0, tzinfo=timezone.utc)
QUEUE_TABLES = ("t", "p", "r", "c", "e", "w")


def ts(seconds: float = 0.0) -> datetime:
    """A moment `seconds` after BASE."""
    return BASE + timedelta(seconds=seconds)


@pytest.fixture
def client(dsn: str) -> Iterator[teguh.Client]:
    """A client on the test's database (schema installed, no queue yet)."""
    with teguh.Client(dsn, application_name="teguh-tests") as c:
        yield c


@pytest.fixture
def queue(client: teguh.Client) -> str:
    """The name of a freshly created queue."""
    client.create_queue(Q)
    return Q


@pytest.fixture
def snapshot(db: Any) -> Callable[[], dict[str, Any]]:
    """Captures everything teguh stores (queues, their tables' rows), to prove nothing was written."""

    def take() -> dict[str, Any]:
        state: dict[str, Any] = {
            "queues": db.all("select queue_name from teguh.queues order by 1"),
            "tables": db.all("select tablename from pg_tables where schemaname = 'teguh' order by 1"),
        }
        for (name,) in state["queues"]:
            for prefix in QUEUE_TABLES:
                state[f"{prefix}_{name}"] = db.all(f"select * from teguh.{prefix}_{name} order by 1")
        return state

    return take


@pytest.fixture
def claimed(client: teguh.Client, queue: str) -> Callable[..., teguh.ClaimedRun]:
    """Spawns a task and claims it: returns the ClaimedRun."""

    def make(task_name: str = "work", params: Any = None, **options: Any) -> teguh.ClaimedRun:
        spawned = client.spawn_task(queue, task_name, params, **options)
        runs = client.claim_task(queue, "tester", 60, 1)
        assert len(runs) == 1 and runs[0].task_id == spawned.task_id
        return runs[0]

    return make
