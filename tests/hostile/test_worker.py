"""A real worker fed hostile handlers: nothing crashes it, every failure is recorded.

Each hostile task must end `failed` with a clear, storable reason (not hang
until its lease expires), and the worker must go on to complete a normal task.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _support.apps import queue_app
from _support.workers import worker_threads

import teguh
from teguh import worker as worker_module
from teguh.app import App
from teguh.testing import WorkerThread

from .conftest import Q


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


class BrokenStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken too")


class NotAStr(Exception):
    def __str__(self) -> Any:
        return 42


@pytest.fixture
def app(dsn: str) -> Iterator[App]:
    with queue_app(dsn, Q) as application:
        yield application


@pytest.fixture
def running(app: App) -> Iterator[Callable[[], WorkerThread]]:
    """Start one worker thread on queue Q; stopped and checked at teardown."""
    options = {"concurrency": 2, "claim_timeout": 60, "poll_interval": 30, "shutdown_timeout": 10}
    with worker_threads(app, queue=Q, **options) as threads:
        yield threads.start


HOSTILE_HANDLERS: dict[str, tuple[Callable[..., Any], str, str]] = {
    # name: (handler, failure type, text the message must hold)
    "unencodable-result": (lambda p: object(), "TypeError", "not JSON serialisable"),
    "set-result": (lambda p: {1, 2}, "TypeError", "not JSON serialisable"),
    "nan-result": (lambda p: float("nan"), "InvalidArgument", "not valid JSON"),
    "nul-result": (lambda p: {"a": "\x00"}, "InvalidArgument", "NUL"),
    "mixed-keys-result": (lambda p: {1: "a", "1": "b"}, "TypeError", "keys mix types"),
    "huge-result": (lambda p: "x" * (2 * 1024 * 1024), "PayloadTooLarge", "above the limit"),
    "deep-result": (lambda p: nested(100_000), "InvalidArgument", "nested too deeply"),
    "deep-step": (
        lambda p, ctx: ctx.step("s", lambda: nested(5_000)),
        "InvalidArgument",
        "nested too deeply",
    ),
    "broken-str": (
        lambda p: (_ for _ in ()).throw(BrokenStr()),
        "BrokenStr",
        "str() of the exception failed",
    ),
    "str-not-a-str": (
        lambda p: (_ for _ in ()).throw(NotAStr()),
        "NotAStr",
        "str() of the exception failed: TypeError",
    ),
    "nul-message": (lambda p: (_ for _ in ()).throw(ValueError("a\x00b")), "ValueError", "a\\0b"),
    "surrogate-message": (lambda p: (_ for _ in ()).throw(ValueError("a\ud800b")), "ValueError", "a\\ud800b"),
    "huge-message": (
        lambda p: (_ for _ in ()).throw(ValueError("y" * 5_000_000)),
        "ValueError",
        "characters cut",
    ),
    "recursion": (lambda p: json.loads("[" * 200_000), "RecursionError", "recursion"),
}


def _infinite(n: int) -> int:
    return _infinite(n + 1) + 1


def test_hostile_handlers_fail_cleanly_and_the_worker_goes_on(
    app: App, running: Callable[[], WorkerThread]
) -> None:
    for name, (handler, _, _) in HOSTILE_HANDLERS.items():
        app.task(name)(handler)
    app.task("infinite-recursion")(lambda p: _infinite(0))
    app.task("normal")(lambda p: {"ok": p})
    handle = running()
    client = app.client
    spawned = {
        name: client.spawn_task(Q, name, None, max_attempts=1, notify_done=True).task_id
        for name in [*HOSTILE_HANDLERS, "infinite-recursion"]
    }
    for name, task_id in spawned.items():
        result = client.wait_for_result(Q, task_id, timeout=30)
        assert result.state == "failed", (name, result)
        failure = result.failure
        assert len(json.dumps(failure)) < 200_000, name  # truncated, never rejected
        if name == "infinite-recursion":
            assert failure["type"] == "RecursionError"
            continue
        expected_type, expected_text = HOSTILE_HANDLERS[name][1:]
        assert failure["type"] == expected_type, (name, failure["type"])
        assert expected_text in failure["message"], (name, failure["message"][:300])
    huge = client.get_task_result(Q, spawned["huge-message"]).failure
    assert len(huge["message"]) <= worker_module.MAX_FAILURE_MESSAGE_CHARS + 100
    assert len(huge["traceback"]) <= worker_module.MAX_FAILURE_TRACEBACK_CHARS + 100
    assert huge["traceback"].startswith("Traceback") and "characters cut] ..." in huge["traceback"]
    normal = client.spawn_task(Q, "normal", [1, "two"], notify_done=True)
    assert client.wait_for_result(Q, normal.task_id, timeout=15).result == {"ok": [1, "two"]}
    assert handle.thread.is_alive() and handle.error is None


def test_json_too_deep_for_python_written_by_sql_fails_only_its_own_run(
    app: App, running: Callable[[], WorkerThread], db: Any
) -> None:
    """Regression: decoding it raised RecursionError inside the claim's fetch,
    which killed the worker's loop and lost every run of the batch."""
    app.task("normal")(lambda p: p)
    app.task("deep")(lambda p: "never runs")
    deep = "[" * 5_000 + "]" * 5_000
    ids = [
        db.value(
            "select task_id from teguh.spawn_task(%s, 'deep', %s::jsonb, '{\"max_attempts\": 1}')", Q, deep
        ),
        db.value("select task_id from teguh.spawn_task(%s, 'normal', '7', '{\"max_attempts\": 1}')", Q),
    ]
    running()
    client = app.client
    deep_result = client.wait_for_result(Q, str(ids[0]), timeout=30)
    assert deep_result.state == "failed"
    assert deep_result.failure["type"] == "UndecodableJSON"
    assert "params" in deep_result.failure["message"]
    normal = client.wait_for_result(Q, str(ids[1]), timeout=30)
    assert (normal.state, normal.result, normal.attempts) == ("completed", 7, 1)
    assert repr(client.get_task_result(Q, str(ids[0])).state) == "'failed'"
    assert isinstance(teguh.Client, type)
