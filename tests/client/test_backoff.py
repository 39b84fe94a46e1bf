"""teguh._backoff: the delays every retry loop uses, and the loop helpers."""

from __future__ import annotations

import pytest

from teguh import _backoff, _connection, _notify
from teguh._backoff import Attempts, Backoff


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_delay_doubles_from_initial_up_to_the_cap() -> None:
    assert [Backoff(0.1, 5.0).delay(n) for n in range(1, 9)] == pytest.approx(
        [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    )
    assert Backoff(1.0, 100.0, factor=3.0).delay(3) == 9.0
    assert Backoff(0.1, 5.0).delay(10**9) == 5.0  # no overflow however long it failed


def test_jitter_is_added_on_top_within_bounds() -> None:
    delays = [Backoff(0.1, 5.0, jitter=0.2).delay(1) for _ in range(200)]
    assert all(0.1 <= d <= 0.3 for d in delays)
    assert len(set(delays)) > 1


def test_expresses_the_worker_claim_loop_formula() -> None:
    # worker.py's claim loop: min(5.0, 0.1 * 2 ** min(failures, 6)), failures counted from 1
    claim = Backoff(0.2, 5.0)
    for failures in range(1, 50):
        assert claim.delay(failures) == pytest.approx(min(5.0, 0.1 * 2 ** min(failures, 6)))


def test_connection_retries_keep_their_delays() -> None:
    # 0.05 s doubling to 1 s, plus up to 0.05 s (what the tenacity loop did)
    for attempt, base in enumerate([0.05, 0.1, 0.2, 0.4, 0.8, 1.0], start=1):
        delay = _connection.RETRY_BACKOFF.delay(attempt)
        assert base <= delay <= base + 0.05
    assert Backoff(0.1, 5.0, jitter=0.2) == _notify.RECONNECT_BACKOFF


def test_attempts_schedule_the_next_try() -> None:
    clock = FakeClock()
    attempts = Attempts(Backoff(1.0, 4.0), clock=clock)
    assert attempts.due() and attempts.remaining() == 0
    assert attempts.failed() == 1.0
    assert not attempts.due() and attempts.remaining() == 1.0
    clock.sleep(1.0)
    assert attempts.due()
    assert [attempts.failed() for _ in range(3)] == [2.0, 4.0, 4.0]
    attempts.retry_now()
    assert attempts.due() and attempts.failures == 4
    attempts.succeeded()
    assert attempts.failed() == 1.0
    attempts.never()
    clock.sleep(1e9)
    assert not attempts.due()


def test_retry_sleeps_between_tries_and_returns_the_result() -> None:
    clock = FakeClock()
    calls: list[int] = []
    seen: list[tuple[str, int, float]] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise ConnectionError(f"try {len(calls)}")
        return "ok"

    result = _backoff.retry(
        flaky,
        backoff=Backoff(0.1, 0.3),
        retry_if=lambda exc: isinstance(exc, ConnectionError),
        on_retry=lambda exc, n, delay: seen.append((str(exc), n, delay)),
        sleep=clock.sleep,
        clock=clock,
    )
    assert result == "ok" and len(calls) == 4
    assert seen == [("try 1", 1, 0.1), ("try 2", 2, 0.2), ("try 3", 3, 0.3)]
    assert clock.now == pytest.approx(100.6)


def test_retry_raises_what_it_may_not_retry_at_once() -> None:
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        _backoff.retry(broken, backoff=Backoff(1, 1), retry_if=lambda exc: False, sleep=pytest.fail)
    assert len(calls) == 1


def test_retry_gives_up_after_max_attempts_with_the_last_error() -> None:
    clock = FakeClock()
    calls: list[int] = []

    def failing() -> None:
        calls.append(1)
        raise ConnectionError(f"try {len(calls)}")

    with pytest.raises(ConnectionError, match="try 6"):
        _backoff.retry(
            failing, backoff=Backoff(0.05, 1.0), retry_if=lambda e: True, max_attempts=6, sleep=clock.sleep
        )
    assert len(calls) == 6
    assert clock.now == pytest.approx(100 + 0.05 + 0.1 + 0.2 + 0.4 + 0.8)


def test_retry_gives_up_after_max_seconds() -> None:
    # the worker's completion retries: stop once a try fails 60 s after the first began
    clock = FakeClock()
    calls: list[float] = []

    def failing() -> None:
        calls.append(clock.now)
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        _backoff.retry(
            failing,
            backoff=Backoff(0.1, 5.0),
            retry_if=lambda e: True,
            max_seconds=60.0,
            sleep=clock.sleep,
            clock=clock,
        )
    assert calls[-1] - calls[0] >= 60.0
    assert calls[-2] - calls[0] < 60.0
