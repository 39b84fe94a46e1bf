"""wait_for_result: woken by `teguh_done`, or by polling when no notification comes."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

import teguh
import teguh.client

from .conftest import Q, eventually


class ObservedClient(teguh.Client):
    """A real Client that signals when a waiter has read the task's state at least once."""

    def __init__(self, dsn: str) -> None:
        super().__init__(dsn)
        self.looked = threading.Event()

    def get_task_result(self, queue: str, task_id: str, *, conn: Any = None) -> teguh.TaskResult:
        result = super().get_task_result(queue, task_id, conn=conn)
        self.looked.set()
        return result


@pytest.fixture
def observed(dsn: str) -> Any:
    with ObservedClient(dsn) as client:
        client.create_queue(Q)
        yield client


def start_waiting(client: ObservedClient, task_id: str, timeout: float) -> Future:
    pool = ThreadPoolExecutor(1)
    future = pool.submit(client.wait_for_result, Q, task_id, timeout)
    pool.shutdown(wait=False)
    assert client.looked.wait(10)
    return future


def test_notify_done_wakes_the_waiter(observed: ObservedClient, monkeypatch: pytest.MonkeyPatch) -> None:
    # Polling so slow that only the notification can end the wait in time.
    monkeypatch.setattr(teguh.client, "POLL_MIN_INTERVAL", 60.0)
    monkeypatch.setattr(teguh.client, "POLL_MAX_INTERVAL", 60.0)
    spawned = observed.spawn_task(Q, "t", notify_done=True)
    future = start_waiting(observed, spawned.task_id, timeout=50)
    (run,) = observed.claim_task(Q, "w")
    observed.complete_run(Q, run.run_id, {"answer": 42})
    result = future.result(timeout=10)
    assert (result.state, result.result) == ("completed", {"answer": 42})


def test_polling_finds_tasks_without_notify_done(
    observed: ObservedClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(teguh.client, "POLL_MAX_INTERVAL", 0.1)
    spawned = observed.spawn_task(Q, "t", max_attempts=1)
    future = start_waiting(observed, spawned.task_id, timeout=30)
    (run,) = observed.claim_task(Q, "w")
    observed.fail_run(Q, run.run_id, {"type": "E", "message": "no"})
    result = future.result(timeout=10)
    assert result.state == "failed" and result.failure == {"type": "E", "message": "no"}


def test_cancelled_is_terminal_too(observed: ObservedClient) -> None:
    spawned = observed.spawn_task(Q, "t", notify_done=True)
    future = start_waiting(observed, spawned.task_id, timeout=30)
    observed.cancel_task(Q, spawned.task_id)
    assert future.result(timeout=10).state == "cancelled"


def test_a_finished_task_returns_at_once(client: teguh.Client, claimed: Any) -> None:
    run = claimed()
    client.complete_run(Q, run.run_id, 7)
    assert client.wait_for_result(Q, run.task_id, timeout=0).result == 7


@pytest.mark.timing
def test_timeout_raises_timeout_error(client: teguh.Client, queue: str) -> None:
    spawned = client.spawn_task(queue, "t")
    started = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        client.wait_for_result(queue, spawned.task_id, timeout=0.3)
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 5
    assert not isinstance(info.value, teguh.TeguhError)
    with pytest.raises(TimeoutError):
        client.wait_for_result(queue, spawned.task_id, timeout=0)


LISTEN_PID = (
    "select pid from pg_stat_activity"
    " where datname = current_database() and application_name = %s and query ilike 'listen %%'"
)


def test_survives_its_listen_backend_being_terminated(
    observed: ObservedClient, db: Any, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    # Polling so slow that only a notification on a new LISTEN connection ends the wait in time.
    monkeypatch.setattr(teguh.client, "POLL_MIN_INTERVAL", 60.0)
    monkeypatch.setattr(teguh.client, "POLL_MAX_INTERVAL", 60.0)
    caplog.set_level(logging.WARNING, logger="teguh.client")
    spawned = observed.spawn_task(Q, "t", notify_done=True)
    future = start_waiting(observed, spawned.task_id, timeout=50)
    old = eventually(lambda: db.value(LISTEN_PID, observed.application_name))
    assert db.value("select pg_terminate_backend(%s)", old)
    eventually(lambda: db.value(LISTEN_PID, observed.application_name) not in (None, old))
    assert not future.done()
    (run,) = observed.claim_task(Q, "w")
    started = time.monotonic()
    observed.complete_run(Q, run.run_id, {"answer": 42})
    result = future.result(timeout=10)
    assert time.monotonic() - started < 5, "woken by polling, not by the new LISTEN connection"
    assert (result.state, result.result) == ("completed", {"answer": 42})
    assert any("LISTEN connection on teguh_done lost" in r.getMessage() for r in caplog.records)


def test_polls_while_listen_cannot_connect(observed: ObservedClient, monkeypatch: pytest.MonkeyPatch) -> None:
    # An unusable LISTEN DSN costs the notification, not the result.
    monkeypatch.setattr(teguh.client, "POLL_MAX_INTERVAL", 0.1)
    monkeypatch.setattr(observed, "_listen_dsn", "host=/nonexistent-teguh-socket-dir dbname=x")
    spawned = observed.spawn_task(Q, "t", notify_done=True)
    future = start_waiting(observed, spawned.task_id, timeout=30)
    (run,) = observed.claim_task(Q, "w")
    observed.complete_run(Q, run.run_id, 1)
    assert future.result(timeout=10).result == 1
