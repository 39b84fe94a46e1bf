"""The completer thread survives errors from the database and keeps completing."""

from __future__ import annotations

from typing import Any

import pytest

from teguh.worker._completer import Completer

from .conftest import Q, eventually


@pytest.mark.timeout(60)
def test_a_failing_completion_batch_does_not_stop_completions(
    app: Any, client: Any, start_worker: Any, db: Any
):
    @app.task("echo")
    def echo(params: Any) -> Any:
        return params

    # refuse to complete one task, as a broken trigger or a check constraint would
    db.run(
        "create function refuse_poison() returns trigger language plpgsql as $$ begin"
        " if new.state = 'completed' and new.params = '\"poison\"' then"
        " raise exception 'poison cannot complete'; end if; return new; end $$"
    )
    db.run(
        f"create trigger refuse before update on teguh.t_{Q} for each row execute function refuse_poison()"
    )
    poison = client.spawn_task(Q, "echo", "poison").task_id
    handle = start_worker(claim_timeout=2, concurrency=2, prefetch=0)
    # the batch holding the poison fails; the completer logs it and goes on
    others = [client.spawn_task(Q, "echo", i).task_id for i in range(5)]
    eventually(lambda: all(client.get_task_result(Q, t).state == "completed" for t in others), timeout=30)
    assert client.get_task_result(Q, poison).state != "completed"
    db.run(f"drop trigger refuse on teguh.t_{Q}")
    # its lease expires and the next attempt completes normally
    eventually(lambda: client.get_task_result(Q, poison).state == "completed", timeout=30)
    assert handle.thread.is_alive()


@pytest.mark.timeout(60)
def test_worker_stops_and_hands_back_if_its_completer_dies(
    app: Any, client: Any, start_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    @app.task("echo")
    def echo(params: Any) -> Any:
        return params

    handle = start_worker(claim_timeout=30)

    def broken(self: Completer, batch: Any) -> None:
        raise RuntimeError("simulated bug in the completer")

    monkeypatch.setattr(Completer, "flush", broken)
    task = client.spawn_task(Q, "echo", 1).task_id
    # the worker stops by itself rather than heartbeat a lease it cannot complete
    handle.thread.join(20)
    assert not handle.thread.is_alive()
    handle.error = None  # the thread's own exception is the point of the test
    # the run was handed back at shutdown: claimable at once, not after 30 s
    assert client.get_task_result(Q, task).state == "pending"
    assert len(client.claim_task(Q, "other")) == 1
