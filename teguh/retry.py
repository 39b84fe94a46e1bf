"""Retry strategies: how long a failed run waits before its task is tried again.

The database computes the delay (engine.md, `fail_run`); these classes only
describe the strategy and serialise it to the JSON form the SQL expects. Each
has a dict equivalent, accepted wherever a strategy is:

* `Fixed(60)` is `{"kind": "fixed", "base_seconds": 60}`;
* `Exponential(30, 2.0, 3600)` is
  `{"kind": "exponential", "base_seconds": 30, "factor": 2.0, "max_seconds": 3600, "jitter": 0.1}`
  (delay = base * factor^(attempt-1), capped by max_seconds);
* `NoRetry()` is `{"kind": "none"}` (retry at once; `max_attempts` bounds it).

Jitter spreads retries of tasks that failed together: with `jitter=j` each
delay `d` becomes a random value in `[d, d * (1 + j)]` (drawn by the
engine; `max_seconds` caps `d` before the jitter). `j` is between 0 and 1.
`Exponential` defaults to `DEFAULT_EXPONENTIAL_JITTER` (0.1), `Fixed` to 0.
In the dict form a missing `jitter` means 0, so strategies stored before
jitter existed keep their exact delays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Union

from .errors import InvalidArgument

__all__ = ["Fixed", "Exponential", "NoRetry", "RetryStrategy", "normalize_retry_strategy"]

DEFAULT_FIXED_SECONDS = 60.0
"""The engine's default delay for a `fixed` strategy given without `base_seconds`."""

DEFAULT_EXPONENTIAL_BASE_SECONDS = 30.0
"""The first delay of an `Exponential` strategy."""

DEFAULT_EXPONENTIAL_FACTOR = 2.0
"""How much each further delay of an `Exponential` strategy grows."""


DEFAULT_EXPONENTIAL_JITTER = 0.1
"""The jitter of an `Exponential` strategy built without one (each delay grows by up to 10 %)."""

MAX_FACTOR = 1000.0
"""The largest growth factor the engine accepts."""

MAX_SECONDS = 3153600000
"""The longest delay the engine accepts (100 years)."""


def _seconds(value: Any, field: str, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(f"{field} must be a number of seconds or a timedelta, not {value!r}")
    if not math.isfinite(value) or not 0 <= value < MAX_SECONDS:
        raise InvalidArgument(f"{field} must be a finite number >= 0 (under 100 years), not {value!r}")
    return value


def _jitter(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(f"{field} must be a number between 0 and 1, not {value!r}")
    if not 0 <= value <= 1:  # also refuses NaN
        raise InvalidArgument(f"{field} must be between 0 and 1 (a fraction of the delay), not {value!r}")
    return value


def _plain(value: float | None) -> int | float | None:
    """Write whole numbers as ints, so the stored JSON reads naturally."""
    if value is not None and float(value).is_integer():
        return int(value)
    return value


@dataclass(frozen=True, init=False)
class Fixed:
    """Retry after the same delay every time.

    Args:
        seconds: the delay, in seconds (int, float or timedelta, >= 0); also
            accepted as `base_seconds=` (the name the other strategies use).
        jitter: spread each delay by up to this fraction (0 to 1): the delay
            is drawn from `[seconds, seconds * (1 + jitter)]`. Default 0.

    Raises:
        InvalidArgument: the delay is negative, infinite or not a number, or
            the jitter is outside [0, 1].
        TypeError: both `seconds` and `base_seconds` given.
    """

    seconds: float
    jitter: float

    def __init__(
        self, seconds: Any = None, *, base_seconds: Any = None, jitter: float = 0.0
    ) -> None:
        if seconds is not None and base_seconds is not None:
            raise TypeError("Fixed takes seconds or base_seconds, not both")
        value = seconds if seconds is not None else base_seconds
        if value is None:
            value = DEFAULT_FIXED_SECONDS
        object.__setattr__(self, "seconds", _seconds(value, "Fixed.seconds"))
        object.__setattr__(self, "jitter", _jitter(jitter, "Fixed.jitter"))

    @property
    def base_seconds(self) -> float:
        """The delay (the same as `seconds`)."""
        return self.seconds

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored with the task (`jitter` only when not 0)."""
        data: dict[str, Any] = {"kind": "fixed", "base_seconds": _plain(self.seconds)}
        if self.jitter:
            data["jitter"] = _plain(self.jitter)
        return data


@dataclass(frozen=True)
class Exponential:
    """Retry after a delay that grows by `factor` with each attempt, up to `max_seconds`.

    Args:
        base_seconds: the first delay (>= 0).
        factor: the growth per attempt (> 0 and <= 1000; below 1 the delays shrink).
        max_seconds: the cap, or None for no cap (>= 0); applied before the jitter.
        jitter: spread each delay by up to this fraction (0 to 1): delay `d`
            becomes a random value in `[d, d * (1 + jitter)]`. Default 0.1, so
            tasks that failed together do not all retry at the same moment.

    Raises:
        InvalidArgument: a value is out of range or not a number.
    """

    base_seconds: float = DEFAULT_EXPONENTIAL_BASE_SECONDS
    factor: float = DEFAULT_EXPONENTIAL_FACTOR
    max_seconds: float | None = None
    jitter: float = DEFAULT_EXPONENTIAL_JITTER

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_seconds", _seconds(self.base_seconds, "Exponential.base_seconds"))
        object.__setattr__(
            self, "max_seconds", _seconds(self.max_seconds, "Exponential.max_seconds", allow_none=True)
        )
        factor = self.factor
        if isinstance(factor, bool) or not isinstance(factor, (int, float)):
            raise InvalidArgument(f"Exponential.factor must be a number, not {factor!r}")
        if not 0 < factor <= MAX_FACTOR:
            raise InvalidArgument(f"Exponential.factor must be > 0 and <= {MAX_FACTOR}, not {factor!r}")
        object.__setattr__(self, "jitter", _jitter(self.jitter, "Exponential.jitter"))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored with the task (`jitter` only when not 0, the dict form's default)."""
        data: dict[str, Any] = {
            "kind": "exponential",
            "base_seconds": _plain(self.base_seconds),
            "factor": _plain(self.factor),
            "max_seconds": _plain(self.max_seconds),
        }
        if self.jitter:
            data["jitter"] = _plain(self.jitter)
        return data


@dataclass(frozen=True)
class NoRetry:
    """Retry at once, with no delay (how many times is bounded by `max_attempts`)."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored with the task."""
        return {"kind": "none"}


RetryStrategy = Union[Fixed, Exponential, NoRetry]  # noqa: UP007 (a runtime alias on 3.10)
"""Any of the strategy classes."""

_FIELDS: dict[str, tuple[str, ...]] = {
    "fixed": ("base_seconds", "jitter"),
    "exponential": ("base_seconds", "factor", "max_seconds", "jitter"),
    "none": (),
}


def _or_zero(value: Any) -> Any:
    return 0.0 if value is None else value


def from_dict(data: dict[str, Any]) -> RetryStrategy:
    """Build a strategy from its dict form, validating every key.

    Raises:
        InvalidArgument: an unknown `kind` or key, or a value out of range.
    """
    kind = data.get("kind")
    if kind not in _FIELDS:
        raise InvalidArgument(
            f"retry_strategy kind must be one of 'fixed', 'exponential', 'none', not {kind!r}"
        )
    unknown = sorted(set(data) - {"kind", *_FIELDS[kind]})
    if unknown:
        raise InvalidArgument(f"unknown key(s) {unknown} in a {kind!r} retry_strategy")
    if kind == "fixed":
        return Fixed(data.get("base_seconds", DEFAULT_FIXED_SECONDS), jitter=_or_zero(data.get("jitter")))
    if kind == "exponential":
        return Exponential(
            data.get("base_seconds", DEFAULT_EXPONENTIAL_BASE_SECONDS),
            data.get("factor", DEFAULT_EXPONENTIAL_FACTOR),
            data.get("max_seconds"),
            # the dict form's missing jitter is 0 (what the engine does with it)
            _or_zero(data.get("jitter")),
        )
    return NoRetry()


def normalize_retry_strategy(strategy: Any) -> dict[str, Any] | None:
    """Turn a strategy object, its dict form or None into the JSON dict the SQL takes.

    Raises:
        InvalidArgument: the dict form is invalid.
        TypeError: the value is neither a strategy nor a dict.
    """
    if strategy is None:
        return None
    if isinstance(strategy, (Fixed, Exponential, NoRetry)):
        return strategy.to_dict()
    if isinstance(strategy, dict):
        return from_dict(strategy).to_dict()
    raise TypeError(
        "retry_strategy must be teguh.Fixed, teguh.Exponential, teguh.NoRetry or a dict, "
        f"not {type(strategy).__name__}"
    )
