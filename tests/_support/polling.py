"""Polling with a deadline: how tests wait for something another thread or process does."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def eventually(
    check: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str | Callable[[], str] = "",
) -> Any:
    """Poll `check` until it returns a truthy value (returned); fail after `timeout` seconds.

    `what` describes the wait in the error (default: the check's repr); a
    callable is called only then, so a log it reads is the log at the failure.

    Raises:
        AssertionError: the check stayed falsy for `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            described = what() if callable(what) else what
            raise AssertionError(f"condition not met within {timeout} s: {described or check!r}")
        time.sleep(interval)  # a polling interval, not synchronisation
