"""Cancelling a running task stops its handler; the worker carries on."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import teguh

from .conftest import Q, eventually


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("probe", "claim_timeout"),
    [("heartbeat", 30), ("step", 30), ("heartbeat", 0)],
    ids=["heartbeat", "step", "heartbeat-no-lease-expiry"],
)
def test_cancelled_running_task_stops_and_worker_goes_on(
    probe: str, claim_timeout: int, app: Any, client: Any, db: Any, start_worker: Any
) -> None:
    # python-api.md: ctx.heartbeat() "raises Cancelled if the task was cancelled",
    # also when leases never expire (claim_timeout=0, no background heartbeat).
    entered = threading.Event()
    saw_cancel = threading.Event()
    release = threading.Event()
    leaked: list[BaseException] = []

    @app.task("looper")
    def looper(params: Any, ctx: Any) -> Any:
        entered.set()
        i = 0
        try:
            while not release.is_set():
                if probe == "heartbeat":
                    ctx.heartbeat()
                else:
                    ctx.step(f"tick-{i}", lambda n=i: n)
                i += 1
                release.wait(0.02)  # pace the loop
        except teguh.Cancelled:
            saw_cancel.set()
            raise
        except BaseException as exc:
            leaked.append(exc)
            raise
        return "never cancelled"

    @app.task("after")
    def after(params: Any) -> Any:
        return "next task done"

    start_worker(concurrency=1, claim_timeout=claim_timeout)
    try:
        looping = client.spawn_task(Q, "looper", notify_done=True)
        assert entered.wait(10)
        # the only slot is busy: this one waits for the looper to stop
        following = client.spawn_task(Q, "after", notify_done=True)
        client.cancel_task(Q, looping.task_id)
        assert saw_cancel.wait(5), "the handler never saw Cancelled"

        cancelled = client.wait_for_result(Q, looping.task_id, timeout=5)
        assert cancelled.state == "cancelled"
        assert cancelled.result is None and cancelled.failure is None
        assert cancelled.attempts == 1
        assert client.wait_for_result(Q, following.task_id, timeout=10).result == "next task done"
        assert leaked == []
        eventually(lambda: db.value("select count(*) from teguh.r_jobs") == 0, timeout=5)
        assert db.value("select state from teguh.t_jobs where task_id = %s", looping.task_id) == "cancelled"
    finally:
        release.set()
