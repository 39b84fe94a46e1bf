"""examples/flask_app runs: order, step, event, shipped (with a real worker)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

from teguh.testing import worker_thread

from . import flask_app as fa

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flask_app" / "app.py"


@pytest.fixture
def example(dsn: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("TEGUH_DSN", fa.sqlalchemy_uri(dsn).replace("+psycopg2", ""))
    spec = importlib.util.spec_from_file_location("teguh_flask_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    try:
        yield module
    finally:
        sys.modules.pop(spec.name, None)
        module.tasks.client.close()


def test_the_example_order_workflow(example: Any) -> None:
    app = example.create_app()
    assert app.test_cli_runner().invoke(args=["teguh", "install"]).exit_code == 0
    assert app.test_cli_runner().invoke(args=["init-db"]).exit_code == 0
    web = app.test_client()
    with worker_thread(example.tasks.teguh_app, poll_interval=5, shutdown_timeout=5):
        created = web.post("/orders", json={"item": "book"})
        assert created.status_code == 201
        order_id, task_id = created.get_json()["id"], created.get_json()["task_id"]
        fa_client = example.tasks.client

        def state() -> str:
            return fa_client.get_task_result("shop", task_id).state

        deadline_wait(lambda: state() == "sleeping")
        assert web.get(f"/orders/{order_id}").get_json()["status"] == "reserved"
        web.post(f"/orders/{order_id}/approve", json={"by": "ann"})
        done = fa_client.wait_for_result("shop", task_id, timeout=20)
    assert done.result == {
        "order_id": order_id,
        "shelf": "shelf-1",
        "approved_by": "ann",
        "status": "shipped",
    }
    assert web.get(f"/orders/{order_id}").get_json()["status"] == "shipped"


def deadline_wait(check: Any, timeout: float = 15.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)  # a polling interval, not synchronisation


def test_the_example_order_expires_after_two_days_on_a_fake_clock(example: Any) -> None:
    from teguh.testing import FakeClock

    app = example.create_app()
    assert app.test_cli_runner().invoke(args=["teguh", "install"]).exit_code == 0
    assert app.test_cli_runner().invoke(args=["init-db"]).exit_code == 0
    client = example.tasks.client
    with (
        FakeClock(example.tasks.teguh_app) as clock,
        worker_thread(example.tasks.teguh_app, poll_interval=5, shutdown_timeout=5),
    ):
        created = app.test_client().post("/orders", json={"item": "lamp"}).get_json()
        deadline_wait(lambda: client.get_task_result("shop", created["task_id"]).state == "sleeping")
        clock.advance(days=2, seconds=1)
        done = client.wait_for_result("shop", created["task_id"], timeout=20)
    assert done.result == {"order_id": created["id"], "status": "expired"}


def test_the_example_in_eager_mode_on_sqlite(example: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """No PostgreSQL at all: eager mode and an SQLite session, as a unit test would."""
    from teguh.testing import eager

    monkeypatch.delenv("TEGUH_DSN")
    app = example.create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})
    with app.app_context():
        example.db.create_all()
    web = app.test_client()
    with eager(example.tasks.teguh_app) as runner:
        created = web.post("/orders", json={"item": "pen"}).get_json()
        shown = web.get(f"/orders/{created['id']}").get_json()
        assert (shown["status"], shown["task"]) == ("reserved", "sleeping")
        web.post(f"/orders/{created['id']}/approve", json={"by": "bo"})
        shown = web.get(f"/orders/{created['id']}").get_json()
        assert (shown["status"], shown["task"]) == ("shipped", "completed")
        assert runner.checkpoints(created["task_id"])["reserve"] == f"shelf-{created['id'] % 7}"
    assert example.tasks.teguh_app._client is None  # teguh never connected
