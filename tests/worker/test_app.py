"""`App`: the handler registry, spawn defaults, and the worker it builds."""

from __future__ import annotations

import inspect
import logging
import os
import socket
import warnings
from typing import Any

import pytest

import teguh
from teguh.app import App

from .conftest import Q


def test_registering_a_name_twice_raises(dsn: str) -> None:
    app = App(dsn, queue=Q)

    @app.task("dup")
    def first(params: Any) -> Any:
        return 1

    with pytest.raises(ValueError, match="dup"):

        @app.task("dup")
        def second(params: Any) -> Any:
            return 2

    assert app.tasks["dup"].fn is first.fn
    with pytest.raises(ValueError):
        app.task("x", no_such_option=1)


def test_spawn_applies_registered_defaults(app: App, client: Any, db: Any) -> None:
    @app.task("emailer", max_attempts=5, retry_strategy=teguh.Fixed(7))
    def emailer(params: Any, ctx: Any) -> Any:
        """Send an email."""
        return {"sent_to": params["to"]}

    spawned = emailer.spawn({"to": "a@b.c"})
    assert isinstance(spawned, teguh.SpawnResult) and spawned.created
    row = db.one(
        "select task_name, params, max_attempts, retry_strategy from teguh.t_jobs where task_id = %s",
        spawned.task_id,
    )
    assert row == ("emailer", {"to": "a@b.c"}, 5, {"kind": "fixed", "base_seconds": 7})

    overridden = emailer.spawn({"to": "d@e.f"}, max_attempts=2)
    assert db.value("select max_attempts from teguh.t_jobs where task_id = %s", overridden.task_id) == 2

    via_app = app.spawn_task("emailer", {"to": "g@h.i"}, idempotency_key="welcome:42")
    again = app.spawn_task("emailer", {"to": "g@h.i"}, idempotency_key="welcome:42")
    assert (again.task_id, again.created) == (via_app.task_id, False)
    assert db.value("select max_attempts from teguh.t_jobs where task_id = %s", via_app.task_id) == 5

    # still a plain function
    assert emailer({"to": "x@y.z"}, None) == {"sent_to": "x@y.z"}
    assert emailer.__name__ == "emailer" and emailer.__doc__ == "Send an email."


def test_spawn_goes_to_the_handlers_queue(app: App, client: Any, db: Any) -> None:
    client.create_queue("other")

    @app.task("elsewhere", queue="other")
    def elsewhere(params: Any) -> Any:
        return None

    spawned = elsewhere.spawn()
    assert db.value("select count(*) from teguh.t_other where task_id = %s", spawned.task_id) == 1
    assert db.value("select count(*) from teguh.t_jobs") == 0
    # a task without a handler here goes to the app's queue
    unregistered = app.spawn_task("handled-elsewhere")
    assert db.value("select count(*) from teguh.t_jobs where task_id = %s", unregistered.task_id) == 1


def test_worker_defaults(dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    app = App(dsn, queue=Q)
    worker = app.worker(claim_timeout=6)
    assert worker.queue == Q
    assert worker.worker_id == f"{socket.gethostname()}:{os.getpid()}"
    assert worker.heartbeat_interval == pytest.approx(2.0)
    assert app.worker(claim_timeout=300).heartbeat_interval == pytest.approx(10.0)
    assert app.worker("other").queue == "other"
    with caplog.at_level(logging.WARNING, logger="teguh.worker"):
        clamped = app.worker(claim_timeout=6, heartbeat_interval=5)
    assert clamped.heartbeat_interval == pytest.approx(2.0)
    assert any("heartbeat_interval" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError):
        app.worker(poll_interval=0)


@pytest.mark.parametrize(
    "option", [{"poll_interval": 0}, {"shutdown_timeout": -1}, {"heartbeat_interval": 0}], ids=str
)
def test_bad_worker_durations_raise_invalid_argument(dsn: str, option: dict[str, float]) -> None:
    # InvalidArgument is a ValueError: callers catching ValueError still do
    app = App(dsn, queue=Q)
    with pytest.raises(teguh.InvalidArgument, match=next(iter(option))):
        app.worker(**option)


def test_worker_signature_is_what_django_filters_settings_through() -> None:
    # contrib/django/_app.py keeps TEGUH["WORKER"] keys found in this signature
    assert list(inspect.signature(teguh.Worker).parameters) == [
        "app",
        "queue",
        "concurrency",
        "claim_timeout",
        "heartbeat_interval",
        "poll_interval",
        "batch_size",
        "prefetch",
        "worker_id",
        "max_stuck_runs",
        "shutdown_timeout",
        "install_signal_handlers",
        "client",
        "listen_dsn",
        "create_queue",  # issue 11: new options go at the end
        "queues",  # issue 12: one worker, several queues (`queue` now defaults to None)
        "metrics_port",  # issue 14: Prometheus metrics (docs/metrics.md)
    ]


def test_public_names_are_exported() -> None:
    # python-api.md: `teguh.App(...)`; style item 8: App, Worker and TaskContext in __all__.
    for name in ("App", "Worker", "TaskContext"):
        assert hasattr(teguh, name), f"teguh.{name} is missing"
        assert name in teguh.__all__


def test_worker_uses_no_deprecated_tenacity_api(dsn: str) -> None:
    # With `filterwarnings = error` (pyproject), a DeprecationWarning raised in
    # Worker.run() kills the worker before it starts.
    from teguh._notify import ListenWaiter
    from teguh.worker._execute import retrying

    app = App(dsn, queue=Q)
    worker = app.worker()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ListenWaiter(dsn, "teguh_jobs").close()
            assert retrying(lambda: "ok") == "ok"
    finally:
        worker.client.close()
        app.client.close()


def test_the_default_backoff_doubles_from_one_second_to_five_minutes() -> None:
    from teguh.worker._execute import DEFAULT_BACKOFF

    assert [DEFAULT_BACKOFF.delay(n) for n in (1, 2, 3, 9, 10, 1000)] == [1, 2, 4, 256, 300, 300]
