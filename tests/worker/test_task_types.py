"""Task types registered by workers, honoured by every producer; pause and resume with live workers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

import teguh
from teguh.app import App
from teguh.cli import main as cli

from . import proc_app
from .conftest import Q, eventually, process_log

PROMPT = 5.0
"""Seconds within which a resumed task must finish: workers poll every 30 s, so only a wake-up makes it."""


@pytest.fixture
def shared_app(dsn: str) -> Iterator[App]:
    application = proc_app.build_app(dsn)
    application.client.create_queue(Q)
    try:
        yield application
    finally:
        application.client.close()


def _task(db: Any, task_id: str) -> dict:
    return db.dicts(f"select * from teguh.t_{Q} where task_id = %s", task_id)[0]


def _state(client: teguh.Client, task_id: str) -> str:
    return client.get_task_result(Q, task_id).state


def _alive(*procs: Any) -> bool:
    for proc in procs:
        if proc.poll() is not None:
            raise AssertionError(f"worker process exited with {proc.returncode}:\n{process_log(proc)}")
    return True


def test_a_worker_registers_its_queues_handlers(dsn: str, db: Any, start_worker: Any) -> None:
    app = App(dsn, queue=Q, version="2026.12.1")
    try:

        @app.task(
            "send-email",
            max_attempts=5,
            retry_strategy=teguh.Fixed(3),
            priority=2,
            cancellation={"max_delay": 60},
            headers={"not": "registered"},
        )
        def send(params: Any) -> Any:
            return params

        @app.task("elsewhere", queue="other")
        def elsewhere(params: Any) -> Any:
            return params

        @app.task("*")
        def catch_all(params: Any) -> Any:
            return params

        @app.task("plain")
        def plain(params: Any) -> Any:
            return params

        start_worker(app)
        types = app.client.list_task_types(Q)
        assert [t.name for t in types] == ["plain", "send-email"]  # not the catch-all, not another queue's
        send_type = types[1]
        assert isinstance(send_type, teguh.TaskType)
        assert (send_type.queue, send_type.max_attempts, send_type.priority) == (Q, 5, 2)
        assert send_type.retry_strategy == {"kind": "fixed", "base_seconds": 3.0}
        assert send_type.cancellation == {"max_delay": 60}
        assert (send_type.version, send_type.paused) == ("2026.12.1", False)
        assert send_type.registered_at == send_type.updated_at
        assert types[0].max_attempts is None and types[0].concurrency is None

        # the CLI knows nothing of the app, yet gets the handler's defaults
        result = CliRunner().invoke(cli, ["--dsn", dsn, "spawn", Q, "send-email", '{"to": "a@b"}'])
        assert result.exit_code == 0, result.output
        task_id = result.stdout.split()[0]
        info = _task(db, task_id)
        assert (info["max_attempts"], info["priority"]) == (5, 2)
        # a given option wins over the registered one; 0 is unlimited
        given = app.client.spawn_task(Q, "send-email", max_attempts=0, priority=-1)
        info = _task(db, given.task_id)
        assert (info["max_attempts"], info["priority"], info["retry_strategy"]["base_seconds"]) == (
            None,
            -1,
            3,
        )

        listed = CliRunner().invoke(cli, ["--dsn", dsn, "task-type", "list", Q])
        assert listed.exit_code == 0, listed.output
        assert "2026.12.1" in listed.stdout and '"send-email"' in listed.stdout
    finally:
        app.client.close()


def test_the_queue_default_and_its_cli(dsn: str, db: Any, client: teguh.Client) -> None:
    assert client.get_queue_options(Q)["default_max_attempts"] == 25
    runner = CliRunner()
    out = runner.invoke(cli, ["--dsn", dsn, "queue", "set", Q, "--default-max-attempts", "3"])
    assert out.exit_code == 0, out.output
    assert '"default_max_attempts": 3' in out.stdout
    spawned = client.spawn_task(Q, "x")
    assert _task(db, spawned.task_id)["max_attempts"] == 3
    bad = runner.invoke(cli, ["--dsn", dsn, "queue", "set", Q, "--default-max-attempts", "-1"])
    assert bad.exit_code == 2
    with pytest.raises(teguh.InvalidArgument, match="default_max_attempts"):
        client.set_queue_options(Q, default_max_attempts=-1)
    with pytest.raises(teguh.InvalidArgument):
        client.set_queue_options(Q)
    with pytest.raises(teguh.QueueNotFound):
        client.set_queue_options("missing", default_max_attempts=3)
    with pytest.raises(teguh.InvalidArgument, match="nope"):
        client.pause_task_type(Q, "nope")
    assert client.get_queue_options(Q) == {
        "default_max_attempts": 3,
        "paused": False,
        "paused_task_types": [],
    }


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_two_releases_of_the_app_last_worker_to_start_wins(
    dsn: str, db: Any, shared_app: App, spawn_process: Any, ledger: Any
) -> None:
    client = shared_app.client
    old = spawn_process(dsn, app_version="v1", typed_max_attempts=4, poll_interval=30)
    eventually(
        lambda: _alive(old) and [t.version for t in client.list_task_types(Q)] == ["v1"] * 3, timeout=30
    )
    new = spawn_process(dsn, app_version="v2", typed_max_attempts=6, poll_interval=30)
    eventually(
        lambda: _alive(new) and [t.version for t in client.list_task_types(Q)] == ["v2"] * 3, timeout=30
    )
    typed = {t.name: t for t in client.list_task_types(Q)}["typed"]
    assert (typed.max_attempts, typed.priority) == (6, 2)
    assert typed.registered_at < typed.updated_at
    spawned = client.spawn_task(Q, "typed")
    assert _task(db, spawned.task_id)["max_attempts"] == 6
    assert client.wait_for_result(Q, spawned.task_id, timeout=30).state == "completed"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_paused_queue_claims_nothing_and_resume_starts_it_at_once(
    dsn: str, shared_app: App, spawn_process: Any, ledger: Any
) -> None:
    client = shared_app.client
    procs = [spawn_process(dsn, poll_interval=30, worker_id=f"w{i}") for i in range(2)]
    eventually(lambda: _alive(*procs) and len(client.list_task_types(Q)) == 3, timeout=30)
    running = client.spawn_task(Q, "slow", {"seconds": 1.5})
    eventually(lambda: _alive(*procs) and ledger.count(running.task_id, "started") == 1, timeout=30)
    client.pause_queue(Q)
    waiting = client.spawn_task(Q, "typed")  # still accepted
    assert client.wait_for_result(Q, running.task_id, timeout=30).state == "completed"  # running tasks finish
    time.sleep(2.0)  # two idle workers that would claim it within milliseconds
    _alive(*procs)
    assert _state(client, waiting.task_id) == "pending"
    assert client.get_queue_options(Q)["paused"] is True
    started = time.monotonic()
    client.resume_queue(Q)
    assert client.wait_for_result(Q, waiting.task_id, timeout=PROMPT).state == "completed"
    assert time.monotonic() - started < PROMPT


@pytest.mark.timeout(60)
def test_a_paused_task_type_waits_while_others_flow(
    app: App, client: teguh.Client, start_worker: Any
) -> None:
    done: list[str] = []

    @app.task("a")
    def a(params: Any) -> Any:
        done.append("a")

    @app.task("b")
    def b(params: Any) -> Any:
        done.append("b")

    handle = start_worker(concurrency=2)
    client.pause_task_type(Q, "a")
    assert {t.name: t.paused for t in client.list_task_types(Q)} == {"a": True, "b": False}
    handle.wait_idle()
    first_a = client.spawn_task(Q, "a")
    first_b = client.spawn_task(Q, "b")
    assert client.wait_for_result(Q, first_b.task_id, timeout=10).state == "completed"
    handle.wait_idle()  # the paused task must not keep an idle worker busy
    assert _state(client, first_a.task_id) == "pending"
    assert done == ["b"]
    started = time.monotonic()
    runner = CliRunner()
    out = runner.invoke(cli, ["--dsn", client.dsn, "task-type", "resume", Q, "a"])
    assert out.exit_code == 0, out.output
    assert client.wait_for_result(Q, first_a.task_id, timeout=PROMPT).state == "completed"
    assert time.monotonic() - started < PROMPT
    bad = runner.invoke(cli, ["--dsn", client.dsn, "task-type", "pause", Q, "nope"])
    assert bad.exit_code == 1 and "nope" in bad.output


@pytest.mark.timeout(60)
def test_a_worker_fails_a_task_for_good_at_the_queue_default(
    app: App, client: teguh.Client, start_worker: Any
) -> None:
    client.set_queue_options(Q, default_max_attempts=3)

    @app.task("always-fails", retry_strategy=teguh.Fixed(0))
    def always_fails(params: Any) -> Any:
        raise RuntimeError("nope")

    start_worker()
    spawned = client.spawn_task(Q, "always-fails")  # no max_attempts, and none registered
    result = client.wait_for_result(Q, spawned.task_id, timeout=30)
    assert (result.state, result.attempts) == ("failed", 3)
