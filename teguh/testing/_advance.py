"""How `advance()` reads its argument, shared by the eager runner and the fake clock."""

from __future__ import annotations

from datetime import timedelta

from .. import _time


def delta(delta: float | timedelta | None, parts: dict[str, float]) -> timedelta:
    """`advance()`'s argument: seconds, a timedelta, or timedelta keywords (`hours=24`)."""
    if delta is not None and parts:
        raise TypeError("give a duration or timedelta keywords, not both")
    if delta is None:
        if not parts:
            raise TypeError("advance() needs a duration, e.g. advance(hours=24)")
        step = timedelta(**parts)
    else:
        step = timedelta(seconds=_time.to_seconds(delta, "delta"))
    if step < timedelta(0):
        raise ValueError("time only moves forward")
    return step
