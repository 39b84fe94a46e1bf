"""Spawn options and task type options: validated in Python, sent to SQL as JSON.

Bad input raises `InvalidArgument` (or `TypeError`) here, naming the option,
before anything is written; the engine checks the same rules again for
callers that reach it with SQL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from . import _json, _validate
from ._time import require_aware, to_whole_seconds
from .errors import InvalidArgument
from .retry import normalize_retry_strategy

SPAWN_OPTIONS = frozenset(
    {
        "headers",
        "retry_strategy",
        "max_attempts",
        "cancellation",
        "idempotency_key",
        "available_at",
        "notify_done",
        "priority",
        "concurrency_key",
        "rate_limit_key",
    }
)
"""The keyword options of `Client.spawn_task`, also accepted as keys of a `spawn_tasks` item."""

MAX_PRIORITY = 32767
"""Priorities range from -MAX_PRIORITY to MAX_PRIORITY (higher is claimed first; default 0)."""


def spawn_options(field: str, max_bytes: int | None, **given: Any) -> dict[str, Any]:
    """Validate spawn options and build the JSON object the SQL takes.

    Args:
        field: a prefix for error messages (`items[3].` in a batch).
        max_bytes: the size limit for headers.

    Raises:
        TypeError: an option has the wrong type.
        InvalidArgument: an option is out of range or malformed.
    """
    options: dict[str, Any] = {}
    headers = given.get("headers")
    if headers is not None:
        if not isinstance(headers, Mapping):
            raise TypeError(f"{field}headers must be a dict, not {type(headers).__name__}")
        _json.dumps(dict(headers), f"{field}headers", max_bytes=max_bytes)
        options["headers"] = dict(headers)
    strategy = normalize_retry_strategy(given.get("retry_strategy"))
    if strategy is not None:
        options["retry_strategy"] = strategy
    if given.get("max_attempts") is not None:
        # 0: unlimited; None (not given): the task type's, else the queue's default
        options["max_attempts"] = _validate.integer(given["max_attempts"], f"{field}max_attempts", minimum=0)
    cancellation = given.get("cancellation")
    if cancellation is not None:
        if not isinstance(cancellation, Mapping):
            raise TypeError(f"{field}cancellation must be a dict, not {type(cancellation).__name__}")
        unknown = sorted(set(cancellation) - {"max_delay", "max_duration"})
        if unknown:
            raise InvalidArgument(f"unknown {field}cancellation key(s) {unknown}")
        policy = {
            key: to_whole_seconds(value, f"{field}cancellation.{key}", positive=True)
            for key, value in cancellation.items()
            if value is not None
        }
        if policy:
            options["cancellation"] = policy
    if given.get("idempotency_key") is not None:
        options["idempotency_key"] = _validate.name(given["idempotency_key"], f"{field}idempotency_key")
    if given.get("available_at") is not None:
        options["available_at"] = require_aware(given["available_at"], f"{field}available_at").isoformat()
    notify_done = given.get("notify_done", False)
    if not isinstance(notify_done, bool):
        raise TypeError(f"{field}notify_done must be a bool")
    if notify_done:
        options["notify_done"] = True
    if given.get("priority") is not None:
        priority = given["priority"]
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TypeError(f"{field}priority must be an int")
        if not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
            raise InvalidArgument(f"{field}priority must be between -{MAX_PRIORITY} and {MAX_PRIORITY}")
        options["priority"] = priority
    for key in ("concurrency_key", "rate_limit_key"):
        if given.get(key) is not None:
            options[key] = _validate.name(given[key], f"{field}{key}")
    return options


TASK_TYPE_DEFAULTS = ("max_attempts", "retry_strategy", "cancellation", "priority")
"""The spawn options a registered task type supplies to spawns that do not give them."""

TASK_TYPE_LIMITS = ("concurrency", "key_concurrency", "rate_limit")
"""The flow-control limits a task type carries (docs/flow-control.md)."""

RATE_LIMIT_RE = re.compile(r"[1-9][0-9]{0,8}/[smh]")
"""A rate limit: a count of starts per second, minute or hour ("20/s", "100/m", "1000/h")."""


def task_limits(
    name: str, *, concurrency: Any = None, key_concurrency: Any = None, rate_limit: Any = None
) -> dict[str, Any]:
    """Validate the flow-control options of `@app.task` and return those given.

    Raises:
        TypeError: a limit has the wrong type.
        InvalidArgument: a count below 1, or a malformed rate ("20/x").
    """
    limits: dict[str, Any] = {}
    for key, value in (("concurrency", concurrency), ("key_concurrency", key_concurrency)):
        if value is not None:
            limits[key] = _validate.integer(value, f"task {name!r} {key}", minimum=1)
    if rate_limit is not None:
        if not isinstance(rate_limit, str):
            kind = type(rate_limit).__name__
            raise TypeError(f"task {name!r} rate_limit must be a str like \"20/s\", not {kind}")
        if not RATE_LIMIT_RE.fullmatch(rate_limit):
            raise InvalidArgument(
                f"task {name!r} rate_limit must look like \"20/s\", \"100/m\" or \"1000/h\" "
                f"(a count from 1, then /s, /m or /h), not {rate_limit!r}"
            )
        limits["rate_limit"] = rate_limit
    return limits


def task_type(name: str, defaults: Mapping[str, Any], max_bytes: int | None) -> dict[str, Any]:
    """The JSON object `teguh.register_task_types` takes for a handler `name` and its `@app.task` options.

    Spawn options that are not task type defaults (headers, idempotency keys,
    ...) stay with `Task.spawn` and are not registered.
    """
    given = {key: defaults[key] for key in TASK_TYPE_DEFAULTS if defaults.get(key) is not None}
    item: dict[str, Any] = {"task_name": name, **spawn_options(f"task {name!r} ", max_bytes, **given)}
    for key in TASK_TYPE_LIMITS:
        if defaults.get(key) is not None:
            item[key] = defaults[key]
    return item
