"""One worker serving several queues (issue 12, spec features-2 section 2, last item).

`teguh worker -q a -q b` / `App.worker(queues=[...])`: one thread pool shared
by the queues, one LISTEN connection on every queue's channel, the idle wait
bounded by the earliest next due moment over the queues, round-robin claims,
completions and heartbeats per queue, and each queue created or checked at
start like a one-queue worker's.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import teguh
from teguh.app import App

from . import proc_app
from .conftest import Q, eventually, process_log

MAIL = "mail"


def _two_queue_app(dsn: str) -> App:
    """Queue `jobs` (the app's) and `mail` (a task's): `app.worker()` serves both."""
    app = App(dsn, queue=Q)

    @app.task("add")
    def add(params: Any) -> Any:
        return params["a"] + params["b"]

    @app.task("send", queue=MAIL)
    def send(params: Any) -> Any:
        return {"sent": params["to"]}

    return app


@pytest.fixture
def two(dsn: str) -> Any:
    application = _two_queue_app(dsn)
    try:
        yield application
    finally:
        application.client.close()


def test_by_default_a_worker_serves_the_apps_queues_and_runs_tasks_of_both(
    two: App, start_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="teguh.worker")
    running = start_worker(two)
    worker = running.worker
    assert (worker.queue, worker.queues) == (Q, (Q, MAIL))  # the app's own queue first
    adds = [two.spawn_task("add", {"a": i, "b": 1}) for i in range(5)]
    sends = [two.spawn_task("send", {"to": f"u{i}"}) for i in range(5)]
    for i, spawned in enumerate(adds):
        assert two.client.wait_for_result(Q, spawned.task_id, timeout=10).result == i + 1
    for i, spawned in enumerate(sends):
        assert two.client.wait_for_result(MAIL, spawned.task_id, timeout=10).result == {"sent": f"u{i}"}
    # each run logs under its own queue
    completed = {(r.queue, r.task_id) for r in caplog.records if r.getMessage().startswith("completed in ")}
    assert completed == {(Q, s.task_id) for s in adds} | {(MAIL, s.task_id) for s in sends}
    starts = [r.getMessage() for r in caplog.records if "serving queues" in r.getMessage()]
    assert len(starts) == 1 and "serving queues 'jobs', 'mail' on db " in starts[0]


def test_worker_and_app_worker_take_queue_or_queues(two: App) -> None:
    assert two.worker("mail").queues == (MAIL,)
    assert two.worker(queues=["mail", "jobs", "mail"]).queues == (MAIL, Q)  # order kept, repeats dropped
    assert teguh.Worker(two, Q).queues == (Q,)
    assert teguh.Worker(two, queues=[MAIL]).queue == MAIL
    with pytest.raises(teguh.InvalidArgument, match="not both"):
        teguh.Worker(two, Q, queues=[MAIL])
    with pytest.raises(teguh.InvalidArgument, match="not both"):
        two.worker(Q, queues=[MAIL])
    with pytest.raises(teguh.InvalidArgument, match="at least one"):
        two.worker(queues=[])
    with pytest.raises(teguh.InvalidArgument, match="list of queue names"):
        teguh.Worker(two, queues="mail")
    with pytest.raises(teguh.InvalidArgument, match="needs a queue"):
        teguh.Worker(two)
    with pytest.raises(teguh.InvalidQueueName):
        two.worker(queues=[Q, "Bad-Name"])
    # an app with no other queue: the one-queue worker it always built
    assert App(None, queue="solo").worker().queues == ("solo",)


def test_concurrency_is_shared_by_the_queues(dsn: str, start_worker: Any) -> None:
    app = App(dsn, queue=Q)
    lock = threading.Lock()
    now = {"running": 0, "most": 0}

    def hold(params: Any) -> None:
        with lock:
            now["running"] += 1
            now["most"] = max(now["most"], now["running"])
        time.sleep(0.15)
        with lock:
            now["running"] -= 1

    app.task("hold")(hold)
    app.task("hold_mail", queue=MAIL)(hold)
    try:
        start_worker(app, concurrency=2)
        spawned = [(Q, app.spawn_task("hold")) for _ in range(4)]
        spawned += [(MAIL, app.spawn_task("hold_mail")) for _ in range(4)]
        for queue, s in spawned:
            assert app.client.wait_for_result(queue, s.task_id, timeout=15).state == "completed"
    finally:
        app.client.close()
    assert now["most"] == 2


def test_a_notification_on_either_queue_wakes_the_worker(two: App, start_worker: Any) -> None:
    running = start_worker(two, poll_interval=30)
    for task_name, queue in (("send", MAIL), ("add", Q), ("send", MAIL)):
        running.wait_idle()
        params = {"to": "x"} if queue == MAIL else {"a": 1, "b": 2}
        spawned = two.spawn_task(task_name, params)
        started = time.monotonic()
        assert two.client.wait_for_result(queue, spawned.task_id, timeout=5).state == "completed"
        assert time.monotonic() - started < 5


def test_a_sleeping_task_on_the_second_queue_wakes_on_time(dsn: str, start_worker: Any) -> None:
    app = App(dsn, queue=Q)

    @app.task("nap", queue=MAIL)
    def nap(params: Any, ctx: Any) -> str:
        ctx.sleep_for("nap", 1.5)
        return "rested"

    try:
        running = start_worker(app, poll_interval=30)
        spawned = app.spawn_task("nap")
        eventually(lambda: app.client.get_task_result(MAIL, spawned.task_id).state == "sleeping", 10)
        running.wait_idle()  # only the queue's next due moment can end this wait (poll: 30 s)
        started = time.monotonic()
        result = app.client.wait_for_result(MAIL, spawned.task_id, timeout=8)
        assert (result.state, result.result) == ("completed", "rested")
        assert time.monotonic() - started < 5
    finally:
        app.client.close()


def test_claims_go_round_robin_so_a_busy_queue_does_not_starve_another(dsn: str, start_worker: Any) -> None:
    app = App(dsn, queue=Q)
    order: list[str] = []
    app.task("busy")(lambda params: order.append("busy"))
    app.task("other", queue=MAIL)(lambda params: order.append("other"))
    try:
        for queue in (Q, MAIL):
            app.client.create_queue(queue)
        for _ in range(30):
            app.spawn_task("busy")
        others = [app.spawn_task("other") for _ in range(3)]
        start_worker(app, concurrency=1, prefetch=0)
        for s in others:
            assert app.client.wait_for_result(MAIL, s.task_id, timeout=15).state == "completed"
    finally:
        app.client.close()
    # one run per claim round, alternating: the other queue's runs come early
    assert [i for i, what in enumerate(order) if what == "other"][-1] < 10, order


def test_each_queue_registers_its_own_task_types(two: App, start_worker: Any) -> None:
    start_worker(two)
    assert [t.name for t in two.client.list_task_types(Q)] == ["add"]
    assert [t.name for t in two.client.list_task_types(MAIL)] == ["send"]
    # a worker not serving the app's queue registers the queue-less handlers on what it serves
    two.client.create_queue("other")
    start_worker(two, queues=["other", MAIL])
    assert [t.name for t in two.client.list_task_types("other")] == ["add"]
    assert [t.name for t in two.client.list_task_types(MAIL)] == ["add", "send"]


def test_heartbeats_keep_the_leases_of_every_queue(dsn: str, start_worker: Any) -> None:
    app = App(dsn, queue=Q)

    def long(params: Any, ctx: Any) -> int:
        time.sleep(3.0)  # longer than the lease: only heartbeats keep it
        return ctx.attempt

    app.task("long")(long)
    app.task("long_mail", queue=MAIL)(long)
    try:
        start_worker(app, claim_timeout=2, concurrency=2)
        spawned = [(Q, app.spawn_task("long")), (MAIL, app.spawn_task("long_mail"))]
        for queue, s in spawned:
            result = app.client.wait_for_result(queue, s.task_id, timeout=15)
            assert (result.state, result.result, result.attempts) == ("completed", 1, 1)
    finally:
        app.client.close()


def test_a_missing_queue_among_several_fails_at_start_in_one_line(two: App) -> None:
    two.client.create_queue(Q)
    worker = two.worker(queues=[Q, "opz"], install_signal_handlers=False)
    with pytest.raises(teguh.QueueNotFound) as raised:
        worker.run()
    assert str(raised.value) == (
        "queue 'opz' does not exist (queues: jobs); "
        "create it with 'teguh queue create opz' or pass --create-queue"
    )
    assert not worker.started.is_set()


# -- processes -----------------------------------------------------------------------


@pytest.fixture
def shared_app(dsn: str) -> Any:
    application = proc_app.build_app(dsn)
    for queue in (Q, MAIL):
        application.client.create_queue(queue)
    try:
        yield application
    finally:
        application.client.close()


@pytest.mark.chaos
@pytest.mark.timeout(60)
def test_sigterm_releases_the_runs_of_every_queue(
    dsn: str, shared_app: App, ledger: Any, spawn_process: Any
) -> None:
    tasks = [
        shared_app.spawn_task("slow", {"seconds": 20.0, "first_run_only": True}, queue=queue)
        for queue in (Q, MAIL)
    ]
    proc = spawn_process(dsn, queues=[Q, MAIL], concurrency=2, shutdown_timeout=0.5, claim_timeout=30)

    def started() -> bool:
        assert proc.poll() is None, process_log(proc)
        return all(ledger.count(t.task_id, "started") == 1 for t in tasks)

    eventually(started, timeout=30)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(20) == 0, process_log(proc)
    assert "exiting now, 2 handler(s) still running" in process_log(proc)
    for task, queue in zip(tasks, (Q, MAIL), strict=True):
        released = shared_app.client.get_task_result(queue, task.task_id)
        assert (released.state, released.attempts, released.failure["type"]) == ("pending", 2, "$Shutdown")


@pytest.mark.timeout(90)
def test_two_processes_serving_both_queues_drain_them_without_double_execution(
    dsn: str, shared_app: App, ledger: Any, spawn_process: Any
) -> None:
    tasks = [(queue, shared_app.spawn_task("typed", queue=queue)) for _ in range(60) for queue in (Q, MAIL)]
    procs = [spawn_process(dsn, queues=[Q, MAIL], concurrency=4, poll_interval=30) for _ in range(2)]
    for queue, spawned in tasks:
        result = shared_app.client.wait_for_result(queue, spawned.task_id, timeout=60)
        assert result.state == "completed", [process_log(p) for p in procs]
    for _, spawned in tasks:
        assert ledger.entries(spawned.task_id) == [("typed", 1)]
    for proc in procs:
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(20) == 0, process_log(proc)


# -- the command line ----------------------------------------------------------------


def test_the_cli_takes_several_queues_and_a_list_in_teguh_queue(monkeypatch: Any, dsn: str) -> None:
    from click.testing import CliRunner

    from teguh import cli

    seen: dict[str, Any] = {}

    def fake_run_worker(app: Any, queue: Any, log_level: str, log_format: str, **options: Any) -> None:
        seen["queue"] = queue

    monkeypatch.setattr(cli, "run_worker", fake_run_worker)
    monkeypatch.setattr(cli, "load_app", lambda spec: _two_queue_app(None))  # type: ignore[arg-type]
    args = ["--dsn", dsn, "worker", "--app", "x:app"]
    runner = CliRunner()
    assert runner.invoke(cli.main, [*args, "-q", "a", "--queue", "b"]).exit_code == 0
    assert seen["queue"] == ("a", "b")
    assert runner.invoke(cli.main, args, env={"TEGUH_QUEUE": "a,b c"}).exit_code == 0
    assert seen["queue"] == ("a", "b", "c")
    assert runner.invoke(cli.main, args, env={"TEGUH_QUEUE": ""}).exit_code == 0
    assert seen["queue"] == ()  # the app's queues


def test_run_worker_builds_a_worker_of_every_queue(monkeypatch: Any, two: App) -> None:
    from teguh import cli

    built: list[tuple[str, ...]] = []

    class Stop(Exception):
        pass

    def fake_run(self: Any) -> None:
        built.append(self.queues)
        raise Stop

    monkeypatch.setattr(teguh.Worker, "run", fake_run)
    monkeypatch.setattr(cli._logging, "configure", lambda *a: None)
    monkeypatch.setattr(cli._malloc, "tune_worker_process", lambda: None)
    for queue in (("jobs", "mail"), ("mail",), (), None, "mail"):
        with pytest.raises(Stop):
            cli.run_worker(two, queue, "INFO", "text")
    assert built == [(Q, MAIL), (MAIL,), (Q, MAIL), (Q, MAIL), (MAIL,)]


def test_framework_worker_commands_take_several_queues() -> None:
    pytest.importorskip("flask")
    from teguh.contrib.flask import teguh_cli

    (queue,) = [p for p in teguh_cli.commands["worker"].params if p.name == "queue"]
    assert queue.multiple and "-q" in queue.opts


def test_the_cli_worker_serves_the_queues_of_teguh_queue(dsn: str, tmp_path: Path) -> None:
    (tmp_path / "queueapp.py").write_text(
        "import teguh\n\napp = teguh.App(queue='jobs')\n", encoding="utf-8"
    )
    with teguh.Client(dsn) as client:
        client.create_queue(MAIL)
    log = tmp_path / "worker.log"
    command = [sys.executable, "-m", "teguh", "--dsn", dsn, "worker", "--app", "queueapp:app"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            command,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TEGUH_QUEUE": "jobs,mail"},
        )
    try:
        eventually(lambda: "serving queues 'jobs', 'mail'" in log.read_text() or proc.poll() is not None, 30)
        assert proc.poll() is None, log.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    done = subprocess.run(
        [*command, "-q", "jobs", "-q", "opz"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        "teguh: error: queue 'opz' does not exist (queues: jobs, mail); "
        "create it with 'teguh queue create opz' or pass --create-queue"
    ]
