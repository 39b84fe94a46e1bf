"""`App.bind`: bindings registered by the app's workers at start, and `App.publish` (also eager)."""

from __future__ import annotations

import threading

import pytest

import teguh
from teguh.testing import WorkerThread, eager


def running(app: teguh.App, queue: str) -> WorkerThread:
    """A worker thread of `app` on `queue`, started by `with`."""
    return WorkerThread(app.worker(queue, install_signal_handlers=False))


def test_a_worker_registers_its_apps_bindings_and_published_tasks_run(dsn):
    app = teguh.App(dsn, queue="jobs")
    seen: list[object] = []
    done = threading.Event()

    @app.task("audit-order")
    def audit(params):
        seen.append(params)
        done.set()

    @app.task("elsewhere", queue="other")
    def elsewhere(params):  # pragma: no cover - never spawned here
        return None

    app.bind("orders.*", "audit-order")
    app.bind("orders.#", "elsewhere")
    app.bind("orders.*", "audit-order")  # twice: one binding
    assert app.topic_bindings() == [
        {"pattern": "orders.*", "task_name": "audit-order", "queue": "jobs"},
        {"pattern": "orders.#", "task_name": "elsewhere", "queue": "other"},
    ]
    try:
        with running(app, "jobs"):
            # only the served queue's bindings: queue "other" is its own workers' to bind
            assert [(b.pattern, b.task_name, b.queue) for b in app.client.list_bindings()] == [
                ("orders.*", "audit-order", "jobs")
            ]
            results = app.publish("orders.created", {"order": 7})
            assert len(results) == 1
            assert done.wait(10)
        assert seen == [{"order": 7}]
    finally:
        app.client.close()


def test_bindings_dropped_from_the_code_stay_until_unbound(dsn):
    old = teguh.App(dsn, queue="jobs")
    old.task("audit-order")(lambda params: None)
    old.bind("orders.*", "audit-order")
    new = teguh.App(dsn, queue="jobs")
    new.task("audit-order")(lambda params: None)
    try:
        with running(old, "jobs"):
            pass
        with running(new, "jobs"):
            pass
        # a worker never deletes bindings: an older worker may still be running during a deploy
        assert [b.pattern for b in new.client.list_bindings()] == ["orders.*"]
        assert new.client.unbind("orders.*", "audit-order", queue="jobs")
        assert new.client.list_bindings() == []
    finally:
        old.client.close()
        new.client.close()


def test_app_bind_refuses_bad_patterns_at_once():
    app = teguh.App("postgresql://nobody@invalid/none")  # never connects
    for pattern in ["a..b", "orders.", "or*ders", "#x"]:
        with pytest.raises(teguh.InvalidArgument):
            app.bind(pattern, "t")
    with pytest.raises(teguh.InvalidArgument):
        app.bind("orders.*", " ")
    assert app.topic_bindings() == []


def test_eager_publish_matches_the_apps_bindings_in_python():
    app = teguh.App("postgresql://nobody@invalid/none")
    got: list[tuple[str, object]] = []
    app.task("a")(lambda params: got.append(("a", params)))
    app.task("b")(lambda params: got.append(("b", params)))
    app.bind("orders.*", "a")
    app.bind("#.created", "b")
    app.bind("payments.#", "b")
    with eager(app) as runner:
        results = app.publish("orders.created", 1)
        assert sorted(got) == [("a", 1), ("b", 1)]
        assert all(runner.result(r.task_id).state == "completed" for r in results)
        again = app.publish("orders.created", 2, idempotency_key="k")
        assert [r.created for r in app.publish("orders.created", 3, idempotency_key="k")] == [False, False]
        assert {r.task_id for r in again}.isdisjoint(r.task_id for r in results)
        assert len(app.publish("payments")) == 1  # "payments.#" matches zero more words
        with pytest.raises(teguh.InvalidArgument):
            app.publish("orders.*")
