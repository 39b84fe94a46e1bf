"""Durations and instants as the SQL functions take them.

Durations arrive as int/float seconds or `timedelta`. Leases, lease extensions
and await timeouts are whole seconds in SQL (engine.md), so those round up
(0 < x < 1 becomes 1); sleeps stay fractional. Instants must be timezone-aware.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from .errors import InvalidArgument


def to_seconds(value: Any, field: str, *, allow_negative: bool = False) -> float:
    """A duration in (fractional) seconds.

    Raises:
        TypeError: not a number or timedelta (bools are refused too).
        InvalidArgument: NaN, infinite, or negative when `allow_negative` is false.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{field} must be a number of seconds or a timedelta, not {type(value).__name__}")
    else:
        seconds = float(value)
    if not math.isfinite(seconds):
        raise InvalidArgument(f"{field} must be finite, not {value!r}")
    if seconds < 0 and not allow_negative:
        raise InvalidArgument(f"{field} must be >= 0, not {value!r}")
    return seconds


def to_whole_seconds(value: Any, field: str, *, positive: bool = False) -> int:
    """A duration rounded up to whole seconds (0 < x < 1 becomes 1).

    Args:
        positive: refuse 0 as well as negative values.

    Raises:
        TypeError: not a number or timedelta.
        InvalidArgument: negative (or zero when `positive`), NaN or infinite.
    """
    seconds = to_seconds(value, field)
    if positive and seconds <= 0:
        raise InvalidArgument(f"{field} must be > 0, not {value!r}")
    whole = math.ceil(seconds)
    if whole > 2**31 - 1:
        raise InvalidArgument(f"{field} is too large: {value!r}")
    return whole


def require_aware(value: Any, field: str) -> datetime:
    """Check that `value` is a timezone-aware datetime and return it.

    Raises:
        TypeError: not a datetime.
        InvalidArgument: a naive datetime (a `ValueError`; its meaning would depend on
            the server's zone).
    """
    if not isinstance(value, datetime):
        raise TypeError(f"{field} must be a timezone-aware datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise InvalidArgument(f"{field} must be timezone-aware (for example datetime.now(timezone.utc))")
    return value
