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
from .errors import Cancelled, ChildFailed, ChildTimeout, InvalidArgument, LeaseLost, Suspended

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from .results import EmitResult, SpawnResult

T = TypeVar("T")

logger = logging.getLogger("teguh.context")

_SELF_ROUND_TRIPPING = frozenset((str, int, float, bool, type(None)))
"""Exact types a step result of which is its own JSON round trip (once `_json.dumps` accepted it)."""


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

    def _spawn_children(
        self,
        queue: str,
        parent_queue: str,
        parent_task_id: str,
        parent_run_id: str,
        items: Sequence[Mapping[str, Any]],
    ) -> list[SpawnResult]:
        """Enqueue tasks as children of the running task; results in input order."""
        ...

    def _await_children(
        self,
        queue: str,
        task_id: str,
        run_id: str,
        step_name: str,
        children: Sequence[tuple[str, str]],
        timeout: int | None = None,
    ) -> tuple[bool, list[dict[str, Any]] | None, bool]:
        """Wait for children under a step name; returns (should_suspend, outcomes, timed_out)."""
        ...

    def _report_progress(self, queue: str, task_id: str, run_id: str, progress_json: str) -> None:
        """Store the running task's progress (last value wins; not a checkpoint)."""
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
        self._seen: dict[str, int] = {}
        self._spawns: dict[str, int] = {}
        # the queue of each child this run spawned (or replayed), by task id
        self._child_queues: dict[str, str] = {}
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
        """The checkpoint name of this use of step `name`: `name`, then `name#2`, `name#3`, ...

        Replays make the same calls in the same order, so the n-th use of a
        name finds the n-th use's checkpoint.
        """
        name = _validate.name(name, "step name")
        n = self._seen.get(name, 0) + 1
        self._seen[name] = n
        return name if n == 1 else f"{name}#{n}"

    # -- durable primitives -------------------------------------------------

    def step(self, name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(*args, **kwargs)` once and checkpoint its JSON result under `name`.

        On a later run of the task, returns the stored result without calling
        `fn`. The value returned is always the JSON round trip of the result (a
        tuple comes back as a list), the first time as on replays, so code after
        the step sees the same value either way.

        A name used again in the same run is numbered (`fetch`, `fetch#2`, ...),
        so a step may sit in a loop; replays match the uses by their order.

        Raises:
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
        # a plain str, int, float, bool or None comes back from JSON as itself
        # (floats by their shortest repr): decoding it again would change nothing
        value = result if type(result) in _SELF_ROUND_TRIPPING else json.loads(text)
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
            item = {"task_name": task_name, "params": params, **options}
            (result,) = self._client._spawn_children(target, self.queue, self.task_id, self.run_id, [item])
            return {"task_id": result.task_id, "attempt": result.attempt, "created": result.created}

        from .results import SpawnResult

        stored = self.step(step_name, spawn)
        self._child_queues[stored["task_id"]] = target
        return SpawnResult(
            task_id=stored["task_id"], run_id=None, attempt=stored["attempt"], created=stored["created"]
        )

    # -- composition: waiting for children, progress ------------------------

    def wait_for(self, child: SpawnResult | str | tuple[str, str], timeout: Any = None) -> Any:
        """Return the result of a child task, suspending this task until the child ends.

        `child` is what `spawn_task` returned, its task id (a child of this
        task's queue, or one whose spawn this run made or replayed), or a
        `(queue, task_id)` pair. The task sleeps
        durably (no worker slot is held) and is woken by the child's end;
        replays return the stored outcome at once.

        Raises:
            ChildFailed: the child failed or was cancelled.
            ChildTimeout: `timeout` (seconds or timedelta) passed first.
            InvalidArgument: `child` is not a child of this task.
            Suspended: the task now waits (the handler unwinds and runs again later).
        """
        return self._wait_children("$wait", [child], timeout)[0]

    def gather(
        self, children: Iterable[SpawnResult | str | tuple[str, str]], timeout: Any = None
    ) -> list[Any]:
        """Wait for all of `children` (like `wait_for`); their results in the given order.

        The task is woken once, when the last child ends. If a child failed or
        was cancelled, `ChildFailed` names the first such child in the given order.
        """
        return self._wait_children("$gather", list(children), timeout)

    def map(
        self,
        step: str,
        task_name: str,
        items: Iterable[Any],
        *,
        queue: str | None = None,
        **spawn_options: Any,
    ) -> list[Any]:
        """Spawn one child `task_name` per item (its params) and gather their results, in order.

        The children are spawned in one statement under the step `step`, with
        idempotency keys derived from it, so a replay never spawns them twice.
        `spawn_options` are `spawn_task`'s (not `idempotency_key`).

        Raises:
            ChildFailed: as `gather`.
            TypeError: `idempotency_key` among the spawn options.
        """
        task_name = _validate.name(task_name, "task name")
        if "idempotency_key" in spawn_options:
            raise TypeError("map derives each child's idempotency_key; do not pass one")
        params_list = list(items)
        target = queue or self.queue
        name = self._start_step(step)
        if name in self._checkpoints:
            ids = self._checkpoints[name]
        else:
            base = f"{self.task_id}:{name}"

            def spawn_all() -> list[str]:
                batch = [
                    {"task_name": task_name, "params": p, "idempotency_key": f"{base}:{i}", **spawn_options}
                    for i, p in enumerate(params_list)
                ]
                if not batch:
                    return []
                spawned = self._client._spawn_children(target, self.queue, self.task_id, self.run_id, batch)
                return [r.task_id for r in spawned]

            ids = self._checkpoint(name, spawn_all())
        for task_id in ids:
            self._child_queues[task_id] = target
        return self._wait_children("$gather", ids, None)

    def _wait_children(self, kind: str, children: list[Any], timeout: Any) -> list[Any]:
        self._check()
        pairs = [self._child_ref(c) for c in children]
        name = self._claim_step(kind)
        if name in self._checkpoints:
            outcomes = self._checkpoints[name]
        else:
            seconds = None if timeout is None else _time.to_whole_seconds(timeout, "timeout")
            if not pairs:
                return []
            should_suspend, outcomes, timed_out = self._client._await_children(
                self.queue, self.task_id, self.run_id, name, pairs, seconds
            )
            if timed_out:
                err = ChildTimeout(
                    f"children of step {name!r} did not all end before the timeout",
                    queue=self.queue,
                    task_id=self.task_id,
                    run_id=self.run_id,
                )
                err.step_name = name
                raise err
            if should_suspend:
                self.log.debug("waiting for %d child task(s) (step %r)", len(pairs), name)
                raise Suspended(
                    f"waiting for {len(pairs)} child task(s)",
                    queue=self.queue,
                    task_id=self.task_id,
                    run_id=self.run_id,
                )
            self._checkpoints[name] = outcomes
        results = []
        for (queue, task_id), outcome in zip(pairs, outcomes or [], strict=True):
            if outcome["state"] != "completed":
                failure = outcome.get("failure")
                said = failure.get("message") if isinstance(failure, dict) else None
                detail = f": {said}" if said else ""
                raise ChildFailed(
                    f"child task {task_id} ended {outcome['state']}{detail}",
                    queue=queue,
                    task_id=task_id,
                    state=outcome["state"],
                    failure=failure,
                )
            results.append(outcome.get("result"))
        return results

    def _child_ref(self, child: Any) -> tuple[str, str]:
        if isinstance(child, tuple) and len(child) == 2:
            # (queue, task_id): a child whose spawn this run has not replayed
            return _validate.queue_name(child[0]), _validate.task_uuid(child[1], "child")
        task_id = _validate.task_uuid(getattr(child, "task_id", child), "child")
        return self._child_queues.get(task_id, self.queue), task_id

    def report_progress(self, done: float, total: float | None = None, message: str | None = None) -> None:
        """Store how far this task got (shown by `Client.get_progress`, `teguh task show`, the dashboard).

        Not a checkpoint: cheap, the last report wins, and it is kept when the
        task ends. Each report is announced on the `teguh_progress` channel.

        Raises:
            InvalidArgument: `done` or `total` is not a finite number >= 0, or
                `message` is not a string.
        """
        self._check()
        value = {
            "done": _progress_number(done, "done"),
            "total": None if total is None else _progress_number(total, "total"),
            "message": _progress_message(message),
        }
        text = _json.dumps(value, "progress", max_bytes=self._client.max_payload_bytes)
        self._client._report_progress(self.queue, self.task_id, self.run_id, text)


def _progress_message(message: Any) -> str | None:
    if message is not None and not isinstance(message, str):
        raise InvalidArgument(f"message must be a string, not {type(message).__name__}")
    return message


def _progress_number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0:
        raise InvalidArgument(f"{field} must be a number >= 0, not {value!r}")
    if value == float("inf"):
        raise InvalidArgument(f"{field} must be finite")
    return value
