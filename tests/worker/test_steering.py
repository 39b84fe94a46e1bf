"""Errors that steer retries, through a real worker: attempts used by each kind of failure.

NonRetryable and `non_retryable=` end the task at once; RetryAfter uses its
attempt and sets the next one's time; Snooze uses none; an unknown task name,
a handler still running at shutdown and a handler past its `timeout` each use
one, so none of them can loop for ever.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import teguh
from teguh.testing import eager
from teguh.worker import _execute, _timeouts

from .conftest import Q, eventually


def spawn_and_wait(app: Any, task_name: str, params: Any = None, timeout: float = 20, **options: Any) -> Any:
    """Spawn through the app (so its handler's max_attempts applies) and wait for the end."""
    task = app.spawn_task(task_name, params, notify_done=True, **options)
    return app.client.wait_for_result(Q, task.task_id, timeout=timeout)


@pytest.mark.timeout(40)
def test_non_retryable_fails_at_once(app: Any, client: Any, start_worker: Any) -> None:
    calls: list[int] = []

    @app.task("refuse", max_attempts=5, retry_strategy=teguh.NoRetry())
    def refuse(params: Any, ctx: Any) -> Any:
        calls.append(ctx.attempt)
        raise teguh.NonRetryable("the input can never work")

    @app.task("listed", max_attempts=5, retry_strategy=teguh.NoRetry(), non_retryable=(KeyError, ValueError))
    def listed(params: Any, ctx: Any) -> Any:
        calls.append(ctx.attempt)
        raise ValueError("bad value")

    start_worker()
    for name in ("refuse", "listed"):
        calls.clear()
        result = spawn_and_wait(app, name)
        assert (result.state, result.attempts, calls) == ("failed", 1, [1]), name
        assert result.failure["non_retryable"] is True
    assert result.failure["type"] == "ValueError" and result.failure["message"] == "bad value"


@pytest.mark.timeout(40)
def test_an_exception_not_listed_in_non_retryable_is_retried(
    app: Any, client: Any, start_worker: Any
) -> None:
    @app.task("other", max_attempts=2, retry_strategy=teguh.NoRetry(), non_retryable=ValueError)
    def other(params: Any) -> Any:
        raise TypeError("not listed")

    start_worker()
    result = spawn_and_wait(app, "other")
    assert (result.state, result.attempts, result.failure["type"]) == ("failed", 2, "TypeError")
    assert "non_retryable" not in result.failure


@pytest.mark.timeout(40)
def test_retry_after_uses_the_attempt_and_sets_the_next_time(
    app: Any, client: Any, start_worker: Any
) -> None:
    seen: list[tuple[int, float]] = []

    @app.task("later", max_attempts=3, retry_strategy=teguh.Fixed(1000))
    def later(params: Any, ctx: Any) -> Any:
        seen.append((ctx.attempt, time.monotonic()))
        if ctx.attempt == 1:
            raise teguh.RetryAfter(1.5, "partner busy")
        if ctx.attempt == 2:
            raise teguh.RetryAfter(app.client.database_time(1.0))  # an aware datetime
        return "done"

    start_worker()
    result = spawn_and_wait(app, "later")
    assert (result.state, result.attempts, result.result) == ("completed", 3, "done")
    assert [a for a, _ in seen] == [1, 2, 3]
    assert seen[1][1] - seen[0][1] >= 1.4, "the strategy's 1000 s was overridden by 1.5 s"
    assert seen[2][1] - seen[1][1] >= 0.9


@pytest.mark.timeout(40)
def test_retry_after_on_the_last_attempt_fails_the_task(app: Any, client: Any, start_worker: Any) -> None:
    @app.task("last", max_attempts=1)
    def last(params: Any) -> Any:
        raise teguh.RetryAfter(timedelta(seconds=1), "try again")

    start_worker()
    result = spawn_and_wait(app, "last")
    assert (result.state, result.attempts, result.failure["type"]) == ("failed", 1, "RetryAfter")
    assert result.failure["message"] == "try again"


@pytest.mark.timeout(40)
def test_snooze_uses_no_attempt_and_is_counted(app: Any, client: Any, start_worker: Any) -> None:
    seen: list[tuple[int, float]] = []

    @app.task("not-yet", max_attempts=1)
    def not_yet(params: Any, ctx: Any) -> Any:
        seen.append((ctx.attempt, time.monotonic()))
        if len(seen) < 3:
            raise teguh.Snooze(0.5 if len(seen) == 1 else timedelta(0))
        return "ready"

    start_worker()
    result = spawn_and_wait(app, "not-yet")
    assert (result.state, result.attempts, result.snoozes, result.result) == ("completed", 1, 2, "ready")
    assert [a for a, _ in seen] == [1, 1, 1]
    assert seen[1][1] - seen[0][1] >= 0.45


@pytest.mark.timeout(40)
def test_unknown_task_uses_attempts_and_ends(
    app: Any, client: Any, start_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_execute, "UNKNOWN_TASK_RETRY_SECONDS", 0.2)

    @app.task("known")
    def known(params: Any) -> Any:
        return 1

    start_worker()
    result = spawn_and_wait(app, "nobody-knows-me", max_attempts=3)
    assert (result.state, result.attempts, result.failure["type"]) == ("failed", 3, "$UnknownTask")


@pytest.mark.timeout(60)
def test_a_run_released_at_shutdown_uses_its_attempt(app: Any, client: Any, start_worker: Any) -> None:
    release = threading.Event()
    entered = threading.Event()

    @app.task("hangs-once", max_attempts=3)
    def hangs_once(params: Any, ctx: Any) -> Any:
        if ctx.attempt == 1:
            entered.set()
            release.wait(30)  # hung (past shutdown_timeout)
            return "too late"
        return f"finished on attempt {ctx.attempt}"

    try:
        first = start_worker(shutdown_timeout=0.2)
        task = app.spawn_task("hangs-once")
        assert entered.wait(15)
        assert first.stop(15)
        after = client.get_task_result(Q, task.task_id)
        assert (after.state, after.attempts, after.failure["type"]) == ("pending", 2, "$Shutdown")
        start_worker()
        result = client.wait_for_result(Q, task.task_id, timeout=15)
        assert (result.state, result.attempts, result.result) == ("completed", 2, "finished on attempt 2")
    finally:
        release.set()


@pytest.mark.timeout(60)
def test_shutdown_on_the_last_attempt_fails_the_task(app: Any, client: Any, start_worker: Any) -> None:
    release = threading.Event()
    entered = threading.Event()

    @app.task("hangs", max_attempts=1)
    def hangs(params: Any) -> Any:
        entered.set()
        release.wait(30)

    try:
        worker = start_worker(shutdown_timeout=0.2)
        task = app.spawn_task("hangs")
        assert entered.wait(15)
        assert worker.stop(15)
        result = client.get_task_result(Q, task.task_id)
        assert (result.state, result.attempts, result.failure["type"]) == ("failed", 1, "$Shutdown")
    finally:
        release.set()


@pytest.mark.timeout(60)
def test_timeout_interrupts_python_code_and_the_attempt_is_retried(
    app: Any, client: Any, start_worker: Any
) -> None:
    outcomes: list[str] = []

    @app.task("spins", max_attempts=2, retry_strategy=teguh.NoRetry(), timeout=0.5)
    def spins(params: Any, ctx: Any) -> Any:
        if ctx.attempt == 2:
            return "quick this time"
        try:
            n = 0
            while True:  # pure Python: the asynchronous exception lands here
                try:
                    n += 1
                except Exception:  # cannot swallow TimeoutExceeded (a BaseException)
                    outcomes.append("swallowed")
        except teguh.TimeoutExceeded:
            outcomes.append("interrupted")
            raise

    start_worker()
    started = time.monotonic()
    result = spawn_and_wait(app, "spins")
    assert (result.state, result.attempts, result.result) == ("completed", 2, "quick this time")
    assert outcomes == ["interrupted"]
    assert time.monotonic() - started < 10


@pytest.mark.timeout(60)
def test_timeout_fails_with_reason_timeout_when_attempts_run_out(
    app: Any, client: Any, start_worker: Any
) -> None:
    @app.task("spins-forever", max_attempts=1, timeout=timedelta(milliseconds=300))
    def spins_forever(params: Any) -> Any:
        while True:
            pass

    @app.task("fast", timeout=5)
    def fast(params: Any) -> Any:
        return "in time"

    start_worker()
    result = spawn_and_wait(app, "spins-forever")
    assert (result.state, result.attempts, result.failure["type"]) == ("failed", 1, "$Timeout")
    assert "timeout of 0.3 s" in result.failure["message"]
    assert spawn_and_wait(app, "fast").result == "in time", "the worker goes on; a fast handler completes"


@pytest.mark.timeout(60)
def test_a_handler_blocked_in_c_is_given_up_on_and_counted_stuck(
    app: Any, client: Any, start_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_timeouts, "TIMEOUT_GRACE_SECONDS", 0.5)
    release = threading.Event()

    @app.task("blocked", max_attempts=1, timeout=0.3)
    def blocked(params: Any) -> Any:
        release.wait(40)  # a C-level wait: the asynchronous exception waits for it
        return "never stored"

    try:
        handle = start_worker(claim_timeout=3, max_stuck_runs=0)
        started = time.monotonic()
        result = spawn_and_wait(app, "blocked")
        assert (result.state, result.failure["type"]) == ("failed", "$Timeout")
        assert time.monotonic() - started < 10, "failed at the deadline plus the grace, not at the wait's end"
        eventually(lambda: handle.worker.stuck_runs == 1, timeout=20)
    finally:
        release.set()
    eventually(lambda: handle.worker.stuck_runs == 0, timeout=20)
    assert client.get_task_result(Q, result.task_id).state == "failed", "the late return is dropped"


# -- bad input -------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: teguh.RetryAfter(datetime(2030, 1, 1)),  # naive
        lambda: teguh.RetryAfter(-1),
        lambda: teguh.RetryAfter(float("nan")),
        lambda: teguh.RetryAfter("5"),
        lambda: teguh.Snooze(datetime(2030, 1, 1)),
        lambda: teguh.Snooze(timedelta(seconds=-1)),
        lambda: teguh.Exponential(jitter=-0.1),
        lambda: teguh.Exponential(jitter=1.5),
        lambda: teguh.Exponential(jitter=float("nan")),
        lambda: teguh.Fixed(5, jitter=2),
        lambda: teguh.Fixed(base_seconds=-5),
    ],
)
def test_bad_delays_and_jitters_raise_invalid_argument(make: Any) -> None:
    with pytest.raises(teguh.InvalidArgument):
        make()


@pytest.mark.parametrize("timeout", [0, -1, timedelta(0), float("nan")])
def test_a_timeout_that_is_not_positive_is_refused(timeout: Any) -> None:
    app = teguh.App("postgresql://unused")
    with pytest.raises(teguh.InvalidArgument):
        app.task("t", timeout=timeout)
    assert app.tasks == {}


def test_non_retryable_takes_exception_classes_only() -> None:
    app = teguh.App("postgresql://unused")
    with pytest.raises(TypeError):
        app.task("t", non_retryable=("ValueError",))
    task = app.task("u", non_retryable=ValueError, timeout=timedelta(seconds=2))(lambda params: None)
    assert (task.non_retryable, task.timeout) == ((ValueError,), 2.0)


def test_the_steering_exceptions_and_signals() -> None:
    assert issubclass(teguh.NonRetryable, teguh.TeguhError)
    assert issubclass(teguh.RetryAfter, teguh.TeguhError) and issubclass(teguh.Snooze, teguh.TeguhError)
    assert not issubclass(teguh.TimeoutExceeded, Exception), "a handler's except Exception cannot swallow it"
    when = datetime(2030, 1, 1, tzinfo=timezone.utc)
    assert teguh.RetryAfter(when).delay == when
    assert teguh.RetryAfter(timedelta(minutes=1), "why").delay == 60.0
    assert str(teguh.RetryAfter(5, "why")) == "why"
    assert teguh.Snooze(2).delay == 2.0


def test_strategies_keyword_names_and_jitter() -> None:
    assert teguh.Fixed(base_seconds=5) == teguh.Fixed(seconds=5) == teguh.Fixed(5)
    assert teguh.Fixed(5).base_seconds == 5
    assert teguh.Fixed(5, jitter=0.25).to_dict() == {"kind": "fixed", "base_seconds": 5, "jitter": 0.25}
    with pytest.raises(TypeError):
        teguh.Fixed(5, base_seconds=6)
    assert teguh.Exponential().jitter == 0.1, "Exponential spreads its delays by default"
    assert teguh.Exponential(base_seconds=1, factor=3, max_seconds=10, jitter=0).to_dict() == {
        "kind": "exponential",
        "base_seconds": 1,
        "factor": 3,
        "max_seconds": 10,
    }
    assert teguh.retry.from_dict({"kind": "exponential"}).jitter == 0, "the dict form's default stays exact"


# -- eager mode ------------------------------------------------------------------


def test_eager_mode_snoozes_until_advance_and_fails_non_retryable() -> None:
    app = teguh.App("postgresql://unused", queue=Q)
    calls: list[int] = []

    @app.task("snoozer", max_attempts=1)
    def snoozer(params: Any, ctx: Any) -> Any:
        calls.append(ctx.attempt)
        if len(calls) == 1:
            raise teguh.Snooze(60)
        return "ok"

    @app.task("refuser")
    def refuser(params: Any) -> Any:
        raise teguh.NonRetryable("no")

    with eager(app, propagate=False) as runner:
        spawned = snoozer.spawn()
        first = runner.result(spawned.task_id)
        assert (first.state, first.snoozes) == ("sleeping", 1)
        runner.advance(59)
        assert runner.result(spawned.task_id).state == "sleeping"
        runner.advance(1)
        done = runner.result(spawned.task_id)
        assert (done.state, done.attempts, done.snoozes, done.result) == ("completed", 1, 1, "ok")
        assert calls == [1, 1]
        refused = runner.result(refuser.spawn().task_id)
        assert (refused.state, refused.failure["type"]) == ("failed", "NonRetryable")


# -- the Client calls ------------------------------------------------------------


def test_client_fail_run_not_retryable_and_snooze_run(client: Any) -> None:
    task = client.spawn_task(Q, "by-hand", max_attempts=5)
    run = client.claim_task(Q, "me", 60)[0]
    client.snooze_run(Q, run.run_id, 0)
    again = client.claim_task(Q, "me", 60)[0]
    assert again.attempt == 1
    with pytest.raises(teguh.InvalidArgument):
        client.fail_run(Q, again.run_id, {"type": "X"}, client.database_time(5), retryable=False)
    with pytest.raises(teguh.InvalidArgument):
        client.snooze_run(Q, again.run_id, datetime(2030, 1, 1))
    with pytest.raises(teguh.InvalidArgument):
        client.snooze_run(Q, again.run_id, -1)
    client.fail_run(Q, again.run_id, {"type": "X", "message": "no"}, retryable=False)
    result = client.get_task_result(Q, task.task_id)
    assert (result.state, result.attempts, result.snoozes) == ("failed", 1, 1)
    assert result.failure == {"type": "X", "message": "no", "non_retryable": True}
    with pytest.raises(teguh.LeaseLost):
        client.snooze_run(Q, again.run_id, timedelta(seconds=1))
