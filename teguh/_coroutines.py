"""Running an `async def` handler's coroutine to completion from synchronous code.

The worker stays thread-based: a handler thread calls the handler, and when
the call returns a coroutine, `run` drives it on an event loop of its own,
created for this run and closed when the run ends. Why a fresh loop per run
rather than one kept per thread: a run costs several database round trips
(milliseconds), a fresh loop about 0.1 ms more than a reused one (see
docs/handlers.md, "Async handlers"), and in exchange nothing outlives the run:
tasks the handler left behind are cancelled, async generators finalised, the
default executor's threads joined, and no loop is left to close (or leak)
when a worker stops or its pool thread exits. The loop is not installed as
the thread's current loop, so the thread's asyncio state is the same after
the run as before.

How it fails: whatever the coroutine raises is raised here unchanged,
including the control-flow signals (`Suspended`, `Cancelled`, `LeaseLost`,
which derive from `BaseException`), so callers handle an async handler's
outcome exactly as a sync one's. `control_signal` finds a signal that an
`asyncio.TaskGroup` wrapped in an exception group, so `App.run_handler` can
raise it as itself.
"""

from __future__ import annotations

import asyncio
import builtins
import contextvars
import sys
import threading
from collections.abc import Coroutine
from typing import Any

from .errors import Cancelled, LeaseLost, Suspended


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run `coro` to completion on a new event loop and return its result (or raise its exception).

    The coroutine sees the caller's context variables (a Flask app context
    pushed by an `around_run` hook, for instance). Called from a thread whose
    event loop is running (eager mode inside an async test), it runs in a
    short-lived thread instead, since a second loop cannot run in that thread;
    the caller blocks until it ends either way.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _run_here(coro)
    return _run_in_thread(coro)


def control_signal(exc: BaseException) -> BaseException | None:
    """The control-flow signal `exc` is or holds (in an exception group, as `asyncio.TaskGroup` raises).

    Within a group, `Cancelled` and `LeaseLost` win over `Suspended`: any of
    them ends the run without an outcome, the first two for good.
    """
    if isinstance(exc, (Cancelled, LeaseLost, Suspended)):
        return exc
    found: list[BaseException] = []
    pending = list(getattr(exc, "exceptions", ()) if _is_group(exc) else ())
    while pending:
        inner = pending.pop(0)
        if _is_group(inner):
            pending.extend(inner.exceptions)  # type: ignore[attr-defined]
        elif isinstance(inner, (Cancelled, LeaseLost, Suspended)):
            found.append(inner)
    for kind in (Cancelled, LeaseLost, Suspended):
        for inner in found:
            if isinstance(inner, kind):
                return inner
    return None


def _is_group(exc: BaseException) -> bool:
    group = getattr(builtins, "BaseExceptionGroup", None)  # Python 3.11+
    return group is not None and isinstance(exc, group)


def _run_here(coro: Coroutine[Any, Any, Any]) -> Any:
    if sys.version_info >= (3, 11):
        # loop_factory: the loop is not set as the thread's current loop, and
        # the task is created in the caller's current context
        with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
            return runner.run(coro, context=contextvars.copy_context())
    return asyncio.run(coro)  # pragma: no cover (Python 3.10)


def _run_in_thread(coro: Coroutine[Any, Any, Any]) -> Any:
    context = contextvars.copy_context()
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = context.run(_run_here, coro)
        except BaseException as exc:  # handed to the caller's thread below
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="teguh-coroutine", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
