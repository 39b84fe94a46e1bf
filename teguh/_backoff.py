"""Exponential backoff with a cap and optional jitter, for every retry loop in teguh.

Retry loops come in three shapes, and each has one tool here:

- "attempt n -> delay": `Backoff.delay(n)`, for loops that count their own
  failures and wait their own way (the worker's claim loop waits on its
  listener, so a wake-up still ends the wait early);
- "when is the next try due": `Attempts`, the failure count of a loop that
  does not block (the LISTEN reconnect, driven from inside `wait()`);
- "call this until it works": `retry()`, which sleeps between tries and
  re-raises the last error when it gives up.

Jitter is added on top of the capped delay (like tenacity's
`wait_exponential(...) + wait_random(0, jitter)`), so that many clients
failing together do not retry in lockstep. `retry()` drives tenacity (the
project's retry library) with these delays, once a first call has failed;
tenacity is imported only then (about 7 ms that `import teguh` and every call
that works at once need not pay).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import tenacity

T = TypeVar("T")

_MAX_EXPONENT = 64
"""Bounds `factor ** (n - 1)`: past this the cap applies anyway, and floats stay finite."""


@dataclass(frozen=True)
class Backoff:
    """A delay policy: `initial * factor ** (n - 1)` seconds after the n-th failure, capped.

    Args:
        initial: seconds to wait after the first failure.
        maximum: the cap on the exponential part.
        factor: growth per failure.
        jitter: at most this many random seconds added to every delay (0: none).
    """

    initial: float
    maximum: float
    factor: float = 2.0
    jitter: float = 0.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1 for the first failure)."""
        exponent = min(max(attempt - 1, 0), _MAX_EXPONENT)
        base = min(self.maximum, self.initial * self.factor**exponent)
        return base + random.uniform(0, self.jitter) if self.jitter else base


class Attempts:
    """The failure count of one retry loop, and when its next try is due.

    For loops that must not block while they back off: they ask `due()` or
    `remaining()` and do other waiting meanwhile. Not thread-safe (one loop owns it).
    """

    def __init__(self, backoff: Backoff, clock: Callable[[], float] = time.monotonic) -> None:
        self.backoff = backoff
        self._clock = clock
        self.failures = 0
        self.next_at = 0.0
        """The `clock()` time at which the next try is due (0: now)."""

    def failed(self) -> float:
        """Count a failure and schedule the next try; returns the delay chosen."""
        self.failures += 1
        delay = self.backoff.delay(self.failures)
        self.next_at = self._clock() + delay
        return delay

    def succeeded(self) -> None:
        """Reset the count: the next failure waits `initial` again."""
        self.failures = 0

    def retry_now(self) -> None:
        """Make the next try due at once (a connection that worked was lost: try again first)."""
        self.next_at = self._clock()

    def never(self) -> None:
        """Make the next try never due."""
        self.next_at = float("inf")

    def due(self) -> bool:
        """Whether the next try may run now."""
        return self._clock() >= self.next_at

    def remaining(self) -> float:
        """Seconds until the next try is due (0 when it is)."""
        return max(self.next_at - self._clock(), 0.0)


def retry(
    call: Callable[[], T],
    *,
    backoff: Backoff,
    retry_if: Callable[[BaseException], bool],
    max_attempts: int | None = None,
    max_seconds: float | None = None,
    on_retry: Callable[[BaseException, int, float], None] | None = None,
    sleep: Callable[[float], object] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Call `call()` until it returns, sleeping `backoff.delay(n)` after the n-th failure.

    Args:
        retry_if: whether an exception is worth another try; others propagate at once.
        max_attempts: give up after this many calls (None: no limit).
        max_seconds: give up when a call fails this long after the first one
            started (None: no limit; the last sleep may overshoot it).
        on_retry: `on_retry(exc, attempt, delay)` before each sleep, for logging;
            `attempt` is the number of the call that just failed.
        sleep: how to wait (a wait that can be woken early works too).

    Raises:
        Exception: the last error, when it is not retryable or the limits are reached.
    """
    started = clock()
    # The first call runs outside tenacity: most calls succeed, and building a
    # retry loop for each of them would cost more than the call's own Python.
    try:
        return call()
    except Exception as exc:
        if not retry_if(exc) or (max_attempts is not None and max_attempts <= 1):
            raise
        first: list[BaseException] = [exc]
    import tenacity  # lazy: see the module docstring

    def again() -> T:
        if first:
            raise first.pop()  # attempt 1 is the call above, already failed
        return call()

    def stop(state: tenacity.RetryCallState) -> bool:
        if max_attempts is not None and state.attempt_number >= max_attempts:
            return True
        return max_seconds is not None and clock() - started >= max_seconds

    def before_sleep(state: tenacity.RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None and state.next_action is not None:
            on_retry(state.outcome.exception(), state.attempt_number, state.next_action.sleep)

    for attempt in tenacity.Retrying(
        retry=tenacity.retry_if_exception(retry_if),
        stop=stop,
        wait=lambda state: backoff.delay(state.attempt_number),
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    ):
        with attempt:
            return again()
    raise AssertionError("unreachable: tenacity returns or re-raises")  # pragma: no cover
