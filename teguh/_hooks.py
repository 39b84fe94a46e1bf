"""Lifecycle hooks: in-process callables told when a run starts and how it ends.

`App.on(event)` registers them; the worker calls them from the thread that
learned the news (a handler thread for starts, failures and cancellations, the
completer thread for successes, once the completion committed). A hook that
raises is logged on "teguh.hooks" and forgotten: it never changes the run's
outcome. Each event's callables are a tuple, so a worker without hooks pays
one truth test of an empty tuple per run and event, nothing more.

The worker's Prometheus metrics (`worker/_metrics.py`) are hooks too, added
to the app's in the worker's own `Hooks`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .errors import InvalidArgument

logger = logging.getLogger("teguh.hooks")

EVENTS = ("task_started", "task_succeeded", "task_retrying", "task_failed", "task_cancelled")
"""The events `App.on` accepts."""

Hook = Callable[..., Any]


class Hooks:
    """The callables of each event, as tuples (empty when none)."""

    __slots__ = EVENTS

    def __init__(self) -> None:
        for event in EVENTS:
            setattr(self, event, ())

    def add(self, event: str, fn: Hook) -> None:
        """Append `fn` to `event`'s callables.

        Raises:
            InvalidArgument: `event` is not one of `EVENTS`.
            TypeError: `fn` is not callable.
        """
        if event not in EVENTS:
            raise InvalidArgument(f"unknown hook event {event!r}; expected one of: {', '.join(EVENTS)}")
        if not callable(fn):
            raise TypeError(f"a hook must be callable, not {fn!r}")
        setattr(self, event, (*getattr(self, event), fn))

    def __bool__(self) -> bool:
        return any(getattr(self, event) for event in EVENTS)

    def merged(self, other: Hooks | None) -> Hooks:
        """A new `Hooks` with this one's callables, then `other`'s."""
        hooks = Hooks()
        for event in EVENTS:
            setattr(hooks, event, (*getattr(self, event), *(getattr(other, event) if other else ())))
        return hooks


def call(hooks: tuple[Hook, ...], event: str, ctx: Any, details: dict[str, Any]) -> None:
    """Call each of `hooks` with `(ctx, **details)`; an exception is logged, never raised."""
    for fn in hooks:
        try:
            fn(ctx, **details)
        except Exception:
            logger.exception(
                "hook %r for %s raised; the run is not affected",
                getattr(fn, "__qualname__", fn),
                event,
                extra={
                    "queue": details.get("queue"),
                    "task_name": details.get("task_name"),
                    "task_id": details.get("task_id"),
                    "attempt": details.get("attempt"),
                },
            )
