"""Eager mode against a real worker: the same handlers, run both ways, must be seen to behave alike.

`teguh.testing.eager` is a second implementation of what the engine does for
a `TaskContext` (the `teguh.context.RunCalls` protocol). Each scenario below
registers the same handlers on an app, drives them through a `_Driver` (eager
in memory, or a worker in a thread on a real database) and returns what a
user can observe: results, states, attempts, and the order in which handler
code and step functions ran. The two observations must be equal.

Known difference, pinned by `test_retries_are_a_known_difference`: eager mode
does not retry; a failure is final there.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _support.polling import eventually
from _support.workers import WorkerThread, start_worker

import teguh
from teguh.context import RunCalls
from teguh.results import TERMINAL_STATES
from teguh.testing import EagerRunner, eager
from teguh.testing.eager import _EagerBackend

Q = "conform"
NAP = 0.3
"""Seconds a sleeping scenario sleeps (real time on the worker, `advance()`d in eager mode)."""


# -- the two ways to run ---------------------------------------------------------------


class _Driver:
    """Spawns, emits, lets time pass and reads outcomes, eagerly or on a worker."""

    def __init__(self, app: teguh.App) -> None:
        self.app = app
        self.log: list[str] = []
        self._log_lock = threading.Lock()

    def note(self, entry: str) -> None:
        with self._log_lock:
            self.log.append(entry)

    def spawn(self, task_name: str, params: Any = None, **options: Any) -> str:
        return self.app.spawn_task(task_name, params, **options).task_id

    def emit(self, event_name: str, payload: Any) -> teguh.EmitResult:
        raise NotImplementedError

    def sleeping(self, task_id: str) -> None:
        """Return once the task is suspended (asleep or waiting for an event)."""
        raise NotImplementedError

    def pass_time(self, seconds: float) -> None:
        raise NotImplementedError

    def outcome(self, task_id: str) -> teguh.TaskResult:
        """The task's result once it is terminal."""
        raise NotImplementedError


class _Eager(_Driver):
    def __init__(self, app: teguh.App, runner: EagerRunner) -> None:
        super().__init__(app)
        self.runner = runner

    def emit(self, event_name: str, payload: Any) -> teguh.EmitResult:
        return self.runner.emit_event(event_name, payload)

    def sleeping(self, task_id: str) -> None:
        assert self.runner.result(task_id).state == "sleeping"

    def pass_time(self, seconds: float) -> None:
        self.runner.advance(seconds)

    def outcome(self, task_id: str) -> teguh.TaskResult:
        result = self.runner.result(task_id)
        assert result.state in TERMINAL_STATES, result
        return result


class _OnWorker(_Driver):
    def __init__(self, app: teguh.App) -> None:
        super().__init__(app)
        self.running: WorkerThread | None = None

    def emit(self, event_name: str, payload: Any) -> teguh.EmitResult:
        return self.app.client.emit_event(Q, event_name, payload)

    def sleeping(self, task_id: str) -> None:
        eventually(lambda: self.app.client.get_task_result(Q, task_id).state == "sleeping", 15)

    def pass_time(self, seconds: float) -> None:
        pass  # real time: the worker wakes the sleeper when it is due

    def outcome(self, task_id: str) -> teguh.TaskResult:
        def done() -> teguh.TaskResult | None:
            result = self.app.client.get_task_result(Q, task_id)
            return result if result.state in TERMINAL_STATES else None

        return eventually(done, 15)


Scenario = Callable[[_Driver], dict[str, Any]]


def _register(app: teguh.App, d: _Driver) -> None:
    """The handlers every scenario uses, registered the same way for both drivers."""

    @app.task("steps")
    def steps(params: Any, ctx: teguh.TaskContext) -> Any:
        d.note("run steps")
        a = ctx.step("a", lambda: d.note("fn a") or params["n"] + 1)
        b = ctx.step("b", lambda: d.note("fn b") or (a, "pair"))
        return {"a": a, "b": b, "attempt": ctx.attempt}

    @app.task("napper")
    def napper(params: Any, ctx: teguh.TaskContext) -> Any:
        d.note(f"run napper wake_event={ctx.wake_event}")
        before = ctx.step("before", lambda: d.note("fn before") or "kept")
        ctx.sleep_for("nap", NAP)
        d.note("after nap")
        return {"before": before, "attempt": ctx.attempt}

    @app.task("waiter")
    def waiter(params: Any, ctx: teguh.TaskContext) -> Any:
        d.note("run waiter")
        payload = ctx.await_event(params["event"])
        d.note(f"waiter got {payload!r} wake_event={ctx.wake_event}")
        return {"payload": payload}

    @app.task("emitter")
    def emitter(params: Any, ctx: teguh.TaskContext) -> Any:
        d.note("run emitter")
        emitted = ctx.emit_event(params["event"], params["payload"])
        return {"first": emitted.first, "payload_unchanged": emitted.payload_unchanged}

    @app.task("parent")
    def parent(params: Any, ctx: teguh.TaskContext) -> Any:
        d.note("run parent")
        child = ctx.spawn_task("child", {"x": params["x"]})
        again = ctx.spawn_task("child", {"x": params["x"]}, idempotency_key=f"{ctx.task_id}:fixed")
        return {"child": child.task_id, "created": child.created, "again": again.created}

    @app.task("child")
    def child(params: Any, ctx: teguh.TaskContext) -> Any:
        d.note("run child")
        return params["x"] * 2

    @app.task("async-flow")
    async def async_flow(params: Any, ctx: teguh.TaskContext) -> Any:
        d.note(f"run async-flow wake_event={ctx.wake_event}")

        async def fetch() -> int:
            d.note("fn fetch")
            await asyncio.sleep(0)
            return params["n"] * 10

        a = await ctx.astep("fetch", fetch)
        b = ctx.step("sync", lambda: d.note("fn sync") or a + 1)
        ctx.sleep_for("nap", NAP)
        payload = ctx.await_event(params["event"])
        ctx.emit_event(f"{params['event']}-seen", {"a": a})
        d.note(f"async-flow got {payload!r}")
        return {"a": a, "b": b, "payload": payload, "attempt": ctx.attempt}

    @app.task("flaky")
    def flaky(params: Any, ctx: teguh.TaskContext) -> Any:
        d.note(f"run flaky attempt={ctx.attempt}")
        ctx.step("once", lambda: d.note("fn once") or 1)
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return "second time lucky"


def _summary(result: teguh.TaskResult) -> dict[str, Any]:
    failure = result.failure or {}
    return {
        "state": result.state,
        "attempts": result.attempts,
        "result": result.result,
        "failure": (failure.get("type"), failure.get("message")) if failure else None,
    }


# -- scenarios ---------------------------------------------------------------------------


def scenario_steps(d: _Driver) -> dict[str, Any]:
    task_id = d.spawn("steps", {"n": 1})
    return {"outcome": _summary(d.outcome(task_id)), "log": d.log}


def scenario_sleep(d: _Driver) -> dict[str, Any]:
    task_id = d.spawn("napper")
    d.sleeping(task_id)
    d.pass_time(NAP + 1)
    return {"outcome": _summary(d.outcome(task_id)), "log": d.log}


def scenario_event_from_a_handler(d: _Driver) -> dict[str, Any]:
    waiting = d.spawn("waiter", {"event": "go"})
    d.sleeping(waiting)
    emitting = d.spawn("emitter", {"event": "go", "payload": {"n": 1, "t": (1, 2)}})
    first = _summary(d.outcome(emitting))
    return {"emitter": first, "waiter": _summary(d.outcome(waiting)), "log": d.log}


def scenario_event_from_outside_first_emit_wins(d: _Driver) -> dict[str, Any]:
    waiting = d.spawn("waiter", {"event": "ready"})
    d.sleeping(waiting)
    emits = [d.emit("ready", "first")]
    outcome = _summary(d.outcome(waiting))
    emits.append(d.emit("ready", "second"))  # changes nothing: the first emit won
    emits.append(d.emit("ready", "first"))
    late = d.spawn("waiter", {"event": "ready"})  # an event emitted earlier is returned at once
    return {
        "waiter": outcome,
        "late": _summary(d.outcome(late)),
        # the times differ (eager time is virtual); whether each emit was first must not
        "emits": [(e.first, e.payload_unchanged, e.emitted_at == emits[0].emitted_at) for e in emits],
        "log": d.log,
    }


def scenario_child_spawn(d: _Driver) -> dict[str, Any]:
    parent_id = d.spawn("parent", {"x": 21})
    parent = d.outcome(parent_id)
    child = d.outcome(parent.result["child"])
    summary = _summary(parent)
    summary["result"] = {k: v for k, v in parent.result.items() if k != "child"}
    return {"parent": summary, "child": _summary(child), "log": d.log}


def scenario_idempotent_spawn(d: _Driver) -> dict[str, Any]:
    first = d.spawn("steps", {"n": 5}, idempotency_key="once")
    second = d.spawn("steps", {"n": 6}, idempotency_key="once")
    return {"same": first == second, "outcome": _summary(d.outcome(first)), "log": d.log}


def scenario_async_handler(d: _Driver) -> dict[str, Any]:
    task_id = d.spawn("async-flow", {"n": 4, "event": "async-go"})
    d.sleeping(task_id)
    d.pass_time(NAP + 1)
    # the run after the nap must be waiting for the event before it is emitted
    eventually(lambda: sum(entry.startswith("run async-flow") for entry in d.log) == 2, 15)
    d.sleeping(task_id)
    d.emit("async-go", [1, 2])
    outcome = _summary(d.outcome(task_id))
    late = d.spawn("waiter", {"event": "async-go-seen"})  # the handler's own emit was kept
    return {"outcome": outcome, "late": _summary(d.outcome(late)), "log": d.log}


SCENARIOS: dict[str, Scenario] = {
    "async_handler": scenario_async_handler,
    "steps": scenario_steps,
    "sleep": scenario_sleep,
    "event_from_a_handler": scenario_event_from_a_handler,
    "event_from_outside": scenario_event_from_outside_first_emit_wins,
    "child_spawn": scenario_child_spawn,
    "idempotent_spawn": scenario_idempotent_spawn,
}


# -- running both ways -----------------------------------------------------------------------


def _run_eagerly(scenario: Scenario) -> dict[str, Any]:
    app = teguh.App("host=/nonexistent dbname=never", queue=Q)  # eager mode never connects
    with eager(app, propagate=False) as runner:
        d = _Eager(app, runner)
        _register(app, d)
        return scenario(d)


@pytest.fixture
def on_worker(dsn: str) -> Iterator[Callable[[Scenario], dict[str, Any]]]:
    apps: list[teguh.App] = []
    running: list[WorkerThread] = []

    def run(scenario: Scenario) -> dict[str, Any]:
        # one worker per database: a second one would take tasks for the first driver's handlers
        assert not running, "on_worker runs one scenario per test"
        app = teguh.App(dsn, queue=Q)
        apps.append(app)
        app.client.create_queue(Q)
        d = _OnWorker(app)
        _register(app, d)
        running.append(start_worker(app, poll_interval=5, shutdown_timeout=5, concurrency=1))
        return scenario(d)

    yield run
    for handle in running:
        assert handle.stop(), "the worker did not stop"
        handle.raise_error()
    for app in apps:
        app.client.close()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_eager_and_worker_agree(name: str, on_worker: Callable[[Scenario], dict[str, Any]]) -> None:
    scenario = SCENARIOS[name]
    eager_seen = _run_eagerly(scenario)
    worker_seen = on_worker(scenario)
    assert eager_seen == worker_seen


def test_the_scenarios_show_what_they_claim() -> None:
    """Pin the eager observations, so agreement above is agreement on the right behaviour."""
    steps = _run_eagerly(scenario_steps)
    assert steps["outcome"]["result"] == {"a": 2, "b": [2, "pair"], "attempt": 1}
    assert steps["log"] == ["run steps", "fn a", "fn b"]
    sleep = _run_eagerly(scenario_sleep)
    # the handler runs twice, its step function once; the sleep does not count as an attempt
    run = "run napper wake_event=None"
    assert sleep["log"] == [run, "fn before", run, "after nap"]
    assert sleep["outcome"]["result"] == {"before": "kept", "attempt": 1}
    event = _run_eagerly(scenario_event_from_a_handler)
    assert event["waiter"]["result"] == {"payload": {"n": 1, "t": [1, 2]}}
    outside = _run_eagerly(scenario_event_from_outside_first_emit_wins)
    assert outside["late"]["result"] == {"payload": "first"}
    assert outside["emits"] == [(True, True, True), (False, False, True), (False, True, True)]
    assert event["emitter"]["result"] == {"first": True, "payload_unchanged": True}
    child = _run_eagerly(scenario_child_spawn)
    assert child["child"]["result"] == 42
    assert child["parent"]["result"] == {"created": True, "again": True}
    flow = _run_eagerly(scenario_async_handler)
    assert flow["outcome"]["result"] == {"a": 40, "b": 41, "payload": [1, 2], "attempt": 1}
    assert flow["late"]["result"] == {"payload": {"a": 40}}
    assert flow["log"][:3] == ["run async-flow wake_event=None", "fn fetch", "fn sync"]
    assert [entry for entry in flow["log"] if entry.startswith("fn ")] == ["fn fetch", "fn sync"]


def test_retries_are_a_known_difference(on_worker: Callable[[Scenario], dict[str, Any]]) -> None:
    """A worker retries a failed attempt (replaying checkpoints); eager mode records the failure as final."""

    def scenario(d: _Driver) -> dict[str, Any]:
        task_id = d.spawn("flaky", max_attempts=2, retry_strategy=teguh.Fixed(0))
        return {"outcome": _summary(d.outcome(task_id)), "log": d.log}

    eager_seen = _run_eagerly(scenario)
    worker_seen = on_worker(scenario)
    assert eager_seen["outcome"] == {
        "state": "failed",
        "attempts": 1,
        "result": None,
        "failure": ("RuntimeError", "first attempt fails"),
    }
    assert eager_seen["log"] == ["run flaky attempt=1", "fn once"]
    assert worker_seen["outcome"]["state"] == "completed"
    assert worker_seen["outcome"]["attempts"] == 2
    assert worker_seen["log"] == ["run flaky attempt=1", "fn once", "run flaky attempt=2"]


# -- the protocol itself ------------------------------------------------------------------------


def _members() -> list[str]:
    return [
        name
        for name, value in vars(RunCalls).items()
        if callable(value) and not name.startswith("__") and not name.startswith("_is_")
    ]


def test_the_protocol_names_what_a_context_calls() -> None:
    source = inspect.getsource(teguh.TaskContext)
    called = {name for name in _members() if f"self._client.{name}(" in source}
    assert called == set(_members()), "RunCalls lists a call TaskContext does not make"
    assert "self._client.max_payload_bytes" in source


@pytest.mark.parametrize("implementation", [teguh.Client, _EagerBackend], ids=["Client", "eager"])
def test_client_and_eager_backend_implement_the_protocol(implementation: type) -> None:
    assert hasattr(implementation, "max_payload_bytes")
    for name in _members():
        wanted = inspect.signature(getattr(RunCalls, name))
        have = inspect.signature(getattr(implementation, name))
        params = list(have.parameters.values())
        takes_any_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
        for p in wanted.parameters.values():
            if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
                assert p.name in have.parameters, f"{implementation.__name__}.{name} lacks {p.name!r}"
                assert have.parameters[p.name].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
                positions = [q.name for q in params if q.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
                expected = [q.name for q in wanted.parameters.values() if q.kind is p.kind]
                assert positions[: len(expected)] == expected, f"{implementation.__name__}.{name} order"
            elif p.kind is inspect.Parameter.KEYWORD_ONLY:
                assert takes_any_keyword or p.name in have.parameters, (
                    f"{implementation.__name__}.{name} lacks keyword {p.name!r}"
                )
        # whatever the implementation adds must be optional (`conn=`)
        variadic = (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
        extra = [q for q in params if q.name not in wanted.parameters and q.kind not in variadic]
        assert all(q.default is not q.empty for q in extra), f"{implementation.__name__}.{name}: {extra}"
