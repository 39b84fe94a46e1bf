"""`TaskContext`: what a handler uses to make its work durable.

A context belongs to one run of one task. Its steps are checkpointed in the
database, so when the task runs again (after a failure, a crash, a sleep or an
event) the work already done is returned from the checkpoint instead of being
done twice.

A context talks to the engine only through `RunCalls`, the calls listed here:
a worker passes its `Client`, eager mode (`teguh.testing.eager`) an in-memory
backend. A new engine call made by a context must be added to `RunCalls`, to
`Client` and to the eager backend (tests/testing/test_conformance.py checks
that all three agree).
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from . import _faults, _json, _time, _validate
from .errors import Cancelled, LeaseLost, Suspended

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .results import EmitResult, SpawnResult

T = TypeVar("T")

logger = logging.getLogger("teguh.context")


@runtime_checkable
class RunCalls(Protocol):
    """What a `TaskContext` needs from a client: exactly the engine calls it makes.

    `teguh.Client` satisfies it (with an extra `conn=` keyword on each
    method); so does the eager backend of `teguh.testing`. The semantics are
    those documented on the `Client` methods of the same names.
    """

    max_payload_bytes: int
    """The size limit for a step's encoded result."""

    def _set_checkpoint_json(
        self,
        queue: str,
        task_id: str,
        step_name: str,
        state_json: str,
        owner_run_id: str,
        extend: int | None,
    ) -> None:
        """`Client.set_checkpoint` with the state already encoded (and checked) as JSON text."""
        ...

    def sleep_run(
        self,
        queue: str,
        run_id: str,
        step_name: str,
        duration: Any = None,
        wake_at: datetime | None = None,
    ) -> tuple[bool, datetime]:
        """A durable sleep under a step name; returns (should_suspend, wake time)."""
        ...

    def await_event(
        self,
        queue: str,
        task_id: str,
        run_id: str,
        step_name: str,
        event_name: str,
        timeout: Any = None,
    ) -> tuple[bool, Any]:
        """Wait for an event under a step name; returns (should_suspend, payload)."""
        ...

    def emit_event(self, queue: str, event_name: str, payload: Any = None) -> EmitResult:
        """Emit an event on a queue; the first emit of a name wins (the result says whether this one was)."""
        ...

    def extend_claim(self, queue: str, run_id: str, extend_by: Any) -> None:
        """Extend a run's lease; raises `Cancelled` or `LeaseLost` if the run no longer holds its task."""
        ...

    def spawn_task(
        self,
        queue: str,
        task_name: str,
        params: Any = None,
        *,
        headers: Mapping[str, Any] | None = None,
        retry_strategy: Any = None,
        max_attempts: int | None = None,
        cancellation: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        available_at: datetime | None = None,
        notify_done: bool = False,
        priority: int | None = None,
        concurrency_key: str | None = None,
        rate_limit_key: str | None = None,
    ) -> SpawnResult:
        """Enqueue a task (a context passes a derived `idempotency_key`)."""
        ...


class RunState:
    """What the worker learned about a run, read by its context.

    The heartbeat sets `cancelled` or `lost`; the handler's thread sees it at
    its next context call and unwinds. Python cannot interrupt a thread, so
    this is the earliest moment a handler can notice. `completing` is set once
    the handler returned and its completion waits to be committed. Plain
    attributes: a flag written by one thread and read by another needs no lock.
    """

    __slots__ = ("cancelled", "completing", "lost")

    def __init__(self) -> None:
        self.cancelled = False
        self.lost = False
        self.completing = False


class TaskContext:
    """The durable context passed to a handler as its second argument.

    Read-only attributes: `task_id`, `run_id`, `attempt` (1-based; counts tries
    after failures, unchanged by sleeps and events), `task_name`, `queue`,
    `params`, `headers`, `wake_event`, `event_payload`.

    Caveats: `step()` runs its function at most once per committed checkpoint;
    the function may run again if the process dies after it returns and before
    its checkpoint commits. Make such functions idempotent, or use the step's
    own id (`f"{ctx.task_id}:{name}"`) as an idempotency key downstream.
    """

    def __init__(
        self,
        client: RunCalls,
        *,
        queue: str,
        task_id: str,
        run_id: str,
        attempt: int,
        task_name: str,
        params: Any,
        headers: dict[str, Any] | None,
        wake_event: str | None,
        event_payload: Any,
        checkpoints: dict[str, Any],
        claim_timeout: int,
        state: RunState | None = None,
        log: logging.LoggerAdapter | None = None,
    ) -> None:
        self._client = client
        self.queue = queue
        self.task_id = task_id
        self.run_id = run_id
        self.attempt = attempt
        self.task_name = task_name
        self.params = params
        self.headers = headers or {}
        self.wake_event = wake_event
        self.event_payload = event_payload
        self._checkpoints = dict(checkpoints)
        self._claim_timeout = claim_timeout
        self._state = state or RunState()
        self._seen: set[str] = set()
        self._spawns: dict[str, int] = {}
        self.log = log or logging.LoggerAdapter(
            logger, {"queue": queue, "task_id": task_id, "run_id": run_id, "attempt": attempt}
        )

    def __repr__(self) -> str:
        return (
            f"TaskContext(queue={self.queue!r}, task_name={self.task_name!r}, task_id={self.task_id!r}, "
            f"run_id={self.run_id!r}, attempt={self.attempt})"
        )

    # -- signals ------------------------------------------------------------

    def _check(self) -> None:
        """Raise the signal the heartbeat recorded, if any."""
        if self._state.cancelled:
            raise Cancelled(
                "task has been cancelled", queue=self.queue, task_id=self.task_id, run_id=self.run_id
            )
        if self._state.lost:
            raise LeaseLost(
                "this run no longer holds its task",
                queue=self.queue,
                task_id=self.task_id,
                run_id=self.run_id,
            )

    def _claim_step(self, name: str) -> str:
        name = _validate.name(name, "step name")
        if name in self._seen:
            raise ValueError(
                f"step {name!r} was already used in this run of task {self.task_name!r}: "
                "step names must be unique within a task"
            )
        self._seen.add(name)
        return name

    # -- durable primitives -------------------------------------------------

    def step(self, name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(*args, **kwargs)` once and checkpoint its JSON result under `name`.

        On a later run of the task, returns the stored result without calling
        `fn`. The value returned is always the JSON round trip of the result (a
        tuple comes back as a list), the first time as on replays, so code after
        the step sees the same value either way.

        Raises:
            ValueError: `name` was already used in this run.
            TypeError: the result is not JSON serialisable (nothing is stored),
                or `fn` returned an awaitable (use `await ctx.astep(...)`).
            Cancelled, LeaseLost: the task was cancelled or this run lost it.
        """
        name = self._start_step(name)
        if name in self._checkpoints:
            return self._checkpoints[name]
        result = fn(*args, **kwargs)
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()  # never awaited, on purpose: no warning about it
            raise TypeError(
                f"step {name!r}: {fn!r} returned an awaitable, which a step cannot store; "
                "in an async handler use `await ctx.astep(...)`"
            )
        return self._checkpoint(name, result)

    async def astep(self, name: str, fn: Callable[..., Awaitable[T] | T], *args: Any, **kwargs: Any) -> T:
        """`step` for async handlers: awaits what `fn(*args, **kwargs)` returns if it is awaitable.

        `fn` may be a coroutine function or a plain one (`asyncio.to_thread`
        runs blocking work off the event loop: `await ctx.astep("x",
        asyncio.to_thread, work, arg)`). The checkpoint itself is written
        synchronously, like every context call (see docs/handlers.md, "Async
        handlers"). Same semantics and errors as `step`.
        """
        name = self._start_step(name)
        if name in self._checkpoints:
            return self._checkpoints[name]
        result = fn(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return self._checkpoint(name, result)

    def _start_step(self, name: str) -> str:
        self._check()
        return self._claim_step(name)

    def _checkpoint(self, name: str, result: Any) -> Any:
        """Store a step's result; returns its JSON round trip."""
        if _faults.ARMED is not None:
            _faults.hit("after_step_fn")
        text = _json.dumps(result, f"result of step {name!r}", max_bytes=self._client.max_payload_bytes)
        self._check()
        self._client._set_checkpoint_json(
            self.queue, self.task_id, name, text, self.run_id, self._claim_timeout or None
        )
        if _faults.ARMED is not None:
            _faults.hit("after_checkpoint_commit")
        value = json.loads(text)
        self._checkpoints[name] = value
        return value

    def sleep_for(self, name: str, duration: float | timedelta) -> None:
        """Sleep durably for `duration` under the step `name`.

        The first time, the wake-up is scheduled (by the database clock), the run
        ends and `Suspended` unwinds the handler; no worker is held while the task
        sleeps. When the task runs again past that moment, the call returns at once.
        """
        seconds = _time.to_seconds(duration, "duration")
        self._sleep(name, duration=seconds)

    def sleep_until(self, name: str, when: datetime) -> None:
        """Sleep durably until the aware datetime `when`, under the step `name`.

        See `sleep_for`.
        """
        self._sleep(name, wake_at=_time.require_aware(when, "when"))

    def _sleep(self, name: str, *, duration: float | None = None, wake_at: datetime | None = None) -> None:
        self._check()
        name = self._claim_step(name)
        should_suspend, resume_at = self._client.sleep_run(
            self.queue, self.run_id, name, duration=duration, wake_at=wake_at
        )
        if should_suspend:
            self.log.debug("sleeping until %s (step %r)", resume_at, name)
            raise Suspended(
                f"sleeping until {resume_at.isoformat()}",
                queue=self.queue,
                task_id=self.task_id,
                run_id=self.run_id,
            )

    def await_event(self, event_name: str, *, step: str | None = None, timeout: Any = None) -> Any:
        """Return the payload of `event_name`, suspending the task until it is emitted.

        The payload is cached under `step` (default: the event name), so later
        runs get it back at once. If it was emitted before, even before this task
        existed, it is returned without waiting.

        Raises:
            EventTimeout: `timeout` elapsed before the event was emitted.
            Suspended: the task now waits; the handler unwinds and runs again
                when the event arrives or the timeout passes.
        """
        self._check()
        event_name = _validate.name(event_name, "event name")
        name = self._claim_step(step if step is not None else event_name)
        if name in self._checkpoints:
            return self._checkpoints[name]
        seconds = None if timeout is None else _time.to_whole_seconds(timeout, "timeout")
        should_suspend, payload = self._client.await_event(
            self.queue, self.task_id, self.run_id, name, event_name, timeout=seconds
        )
        if should_suspend:
            self.log.debug("waiting for event %r (step %r)", event_name, name)
            raise Suspended(
                f"waiting for event {event_name!r}",
                queue=self.queue,
                task_id=self.task_id,
                run_id=self.run_id,
            )
        self._checkpoints[name] = payload
        return payload

    def emit_event(self, event_name: str, payload: Any = None) -> EmitResult:
        """Emit `event_name` on this task's queue; the first emit of a name wins.

        Returns an `EmitResult`, truthy when this emit was the first. Events
        are kept per queue until cleanup, so a name should include what it
        is about (`f"shipped:{order_id}"`); see `Client.emit_event`.
        """
        self._check()
        return self._client.emit_event(self.queue, event_name, payload)

    def heartbeat(self, extend_by: Any = None) -> None:
        """Extend this run's lease now (by `extend_by`, default the claim timeout).

        The worker already heartbeats in the background; call this from long
        loops to notice a cancellation early.

        Raises:
            Cancelled: the task was cancelled.
            LeaseLost: another run took the task over.
        """
        self._check()
        if extend_by is None:
            # A lease that never expires stays so whatever the extension; the
            # call still tells whether the run holds its task.
            seconds = max(self._claim_timeout, 1)
        else:
            seconds = _time.to_whole_seconds(extend_by, "extend_by", positive=True)
        self._client.extend_claim(self.queue, self.run_id, seconds)

    def spawn_task(
        self, task_name: str, params: Any = None, *, queue: str | None = None, **options: Any
    ) -> SpawnResult:
        """Spawn a task once per run of this code path, even across replays.

        The spawn is a step (named after the child's task name and its position
        among this handler's spawns of that name) and carries a derived
        idempotency key, so a replay returns the first spawn's result rather
        than spawning again. Pass `idempotency_key=` to choose the key yourself.
        """
        task_name = _validate.name(task_name, "task name")
        n = self._spawns.get(task_name, 0) + 1
        self._spawns[task_name] = n
        step_name = f"$spawn:{task_name}:{n}"
        options.setdefault("idempotency_key", f"{self.task_id}:{step_name}")
        target = queue or self.queue

        def spawn() -> dict[str, Any]:
            result = self._client.spawn_task(target, task_name, params, **options)
            return {"task_id": result.task_id, "attempt": result.attempt, "created": result.created}

        from .results import SpawnResult

        stored = self.step(step_name, spawn)
        return SpawnResult(
            task_id=stored["task_id"], run_id=None, attempt=stored["attempt"], created=stored["created"]
        )
