"""How handler outcomes are stored: results, exceptions, unknown names, bad results."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Q


@pytest.fixture
def run_task(client: Any, start_worker: Any) -> Any:
    """Spawn a task (terminal after one failure), run it, return its TaskResult."""
    started: list[Any] = []

    def run(task_name: str, params: Any = None, **options: Any) -> Any:
        if not started:
            started.append(start_worker())
        options.setdefault("max_attempts", 1)
        task = client.spawn_task(Q, task_name, params, notify_done=True, **options)
        return client.wait_for_result(Q, task.task_id, timeout=15)

    return run


@pytest.mark.timeout(30)
def test_unknown_task_fails_with_unknown_task_reason(app: Any, run_task: Any) -> None:
    @app.task("known")
    def known(params: Any) -> Any:
        return "known"

    result = run_task("nobody-handles-this")
    assert result.state == "failed"
    assert result.failure["type"] == "$UnknownTask"
    assert "nobody-handles-this" in result.failure["message"]
    assert run_task("known").result == "known"


@pytest.mark.timeout(30)
def test_catch_all_receives_unknown_names(app: Any, run_task: Any) -> None:
    @app.task("*")
    def anything(params: Any, ctx: Any) -> Any:
        return {"name": ctx.task_name, "params": params}

    @app.task("specific")
    def specific(params: Any) -> Any:
        return "specific"

    result = run_task("whatever.you.like", {"k": [1, 2]})
    assert (result.state, result.result) == (
        "completed",
        {"name": "whatever.you.like", "params": {"k": [1, 2]}},
    )
    assert run_task("specific").result == "specific", "a named handler wins over the catch-all"


@pytest.mark.timeout(30)
def test_handler_exception_is_stored_as_type_message_traceback(app: Any, run_task: Any) -> None:
    @app.task("raiser")
    def raiser(params: Any, ctx: Any) -> Any:
        raise ValueError(f"bad input {params['n']}")

    result = run_task("raiser", {"n": 42})
    assert result.state == "failed"
    failure = result.failure
    assert {"type", "message", "traceback"} <= set(failure)
    assert failure["type"] == "ValueError"
    assert failure["message"] == "bad input 42"
    assert "ValueError: bad input 42" in failure["traceback"]
    assert "in raiser" in failure["traceback"]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "bad",
    [{1, 2}, {"when": object()}, float("nan"), {"text": "nul\x00byte"}],
    ids=["set", "object", "nan", "nul"],
)
def test_non_json_result_fails_the_run_with_a_clear_reason(app: Any, run_task: Any, bad: Any) -> None:
    @app.task("bad-result")
    def bad_result(params: Any) -> Any:
        return bad

    @app.task("good")
    def good(params: Any) -> Any:
        return "fine"

    result = run_task("bad-result")
    assert result.state == "failed"
    assert result.failure["type"] in ("TypeError", "ValueError", "InvalidArgument")
    assert "result" in result.failure["message"].lower()
    assert run_task("good").result == "fine", "the worker goes on"


@pytest.mark.timeout(30)
def test_return_value_is_stored_as_the_result(app: Any, run_task: Any) -> None:
    value = {"list": [1, 2.5, "x", None, True], "nested": {"a": {"b": []}}, "unicode": "héllo ✓"}

    @app.task("returner")
    def returner(params: Any, ctx: Any) -> Any:
        return value

    @app.task("returns-none")
    def returns_none(params: Any, ctx: Any) -> None:
        return None

    result = run_task("returner")
    assert (result.state, result.result, result.failure) == ("completed", value, None)
    none = run_task("returns-none")
    assert (none.state, none.result) == ("completed", None)


@pytest.mark.timeout(30)
def test_handler_taking_only_params(app: Any, run_task: Any) -> None:
    @app.task("params-only")
    def params_only(params):  # type: ignore[no-untyped-def]
        return params["x"] + 1

    @app.task("params-and-ctx")
    def both(params, ctx):  # type: ignore[no-untyped-def]
        return {"task_name": ctx.task_name, "same_params": ctx.params == params}

    assert run_task("params-only", {"x": 41}).result == 42
    assert run_task("params-and-ctx", {"y": 1}).result == {"task_name": "params-and-ctx", "same_params": True}


@pytest.mark.timeout(30)
def test_around_run_hooks_wrap_every_handler_call_in_order(app: Any, run_task: Any) -> None:
    import contextlib
    import threading

    events: list[str] = []
    local = threading.local()

    @app.around_run
    @contextlib.contextmanager
    def outer(ctx: Any) -> Any:
        events.append(f"outer-enter:{ctx.task_name}")
        local.env = "from-hook"
        try:
            yield
        finally:
            local.env = None
            events.append("outer-exit")

    @app.around_run
    @contextlib.contextmanager
    def inner(ctx: Any) -> Any:
        events.append("inner-enter")
        try:
            yield
        finally:
            events.append("inner-exit")

    @app.task("sees-env")
    def sees_env(params: Any) -> Any:
        events.append("handler")
        return getattr(local, "env", None)

    @app.task("raises-inside")
    def raises_inside(params: Any) -> Any:
        raise RuntimeError("boom")

    assert run_task("sees-env").result == "from-hook"
    assert events == ["outer-enter:sees-env", "inner-enter", "handler", "inner-exit", "outer-exit"]
    events.clear()
    failed = run_task("raises-inside")
    assert failed.state == "failed" and failed.failure["type"] == "RuntimeError"
    assert events == ["outer-enter:raises-inside", "inner-enter", "inner-exit", "outer-exit"]


@pytest.mark.timeout(30)
def test_an_around_run_hook_that_raises_fails_the_run(app: Any, run_task: Any) -> None:
    calls: list[str] = []

    @app.around_run
    def broken(ctx: Any) -> Any:
        raise LookupError("no environment for you")

    @app.task("never-runs")
    def never_runs(params: Any) -> Any:
        calls.append("ran")

    result = run_task("never-runs")
    assert result.state == "failed"
    assert result.failure["type"] == "LookupError" and "no environment" in result.failure["message"]
    assert calls == []
