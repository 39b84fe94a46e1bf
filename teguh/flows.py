"""`Flow`: a declarative DAG of steps, run as child tasks of one flow task.

Some work reads best as a graph ("charge, then ship; refund if declined")
rather than as code. A `Flow` declares that graph once; at run time it is an
ordinary task (named after the flow) whose handler walks the graph in waves:
it spawns every step whose dependencies are met and whose condition holds as
a child task (`ctx.spawn_task`, one task type per step, `<flow>.<step>`),
waits for the wave with `ctx.gather`, and repeats. So a flow is built on the
child-task primitives, not beside them: it gets their durability (a replay
after a crash returns the recorded spawns and results, never re-running a
finished step), their wake-ups (no polling) and their parallelism (the steps
of a wave run on any worker of their queue).

Errors in the graph are refused as soon as they are certain: a duplicate
name, a self-dependency or a cycle at the `@flow.step` that makes it; an
unknown dependency or `on_failure` step by `validate()`, which `spawn()` and
the flow's handler call before anything is written (docs/composition.md,
"Flows").
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import _validate
from .errors import ChildFailed, InvalidArgument, NonRetryable

if TYPE_CHECKING:
    from .app import App, Task
    from .context import TaskContext
    from .results import SpawnResult

__all__ = ["FAILED_KEY", "Flow", "FlowFailed", "FlowStep"]

logger = logging.getLogger("teguh.flows")

FAILED_KEY = "$failed"
"""The key of `up` that tells the `on_failure` step what failed: `{"step", "state", "failure"}`."""

_CONDITION_STEP = "$flow:condition:{}"
"""The checkpoint of a step's condition, so a replay takes the decision the first run took."""


class FlowFailed(NonRetryable):
    """A flow's step failed (or was cancelled): the flow fails for good after its `on_failure` step.

    Attributes (also in the task's failure reason): `step`, the step that
    failed; `state`, its task's end (`failed` or `cancelled`); `failure`, its
    failure reason.
    """

    def __init__(self, message: str, *, step: str, state: str, failure: Any) -> None:
        super().__init__(message)
        self.step = step
        self.state = state
        self.failure = failure


@dataclass(frozen=True)
class FlowStep:
    """One declared step: its name, dependencies, condition, handler and task."""

    name: str
    depends_on: tuple[str, ...]
    condition: Callable[[dict[str, Any]], bool] | None
    fn: Callable[..., Any]
    task_name: str
    queue: str | None


def _takes_context(fn: Callable[..., Any]) -> bool:
    """Whether a step handler takes `(inp, up, ctx)` rather than `(inp, up)`."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return True
    positional = [
        p
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    if len(positional) < 2:
        raise TypeError(f"flow step handler {fn!r} must take (inp, up) or (inp, up, ctx)")
    return len(positional) >= 3


class Flow:
    """A declarative DAG of steps, spawned as one task whose steps run as its child tasks.

    ```python
    flow = teguh.Flow("order", app=app, on_failure="refund")

    @flow.step("charge")
    def charge(inp, up): ...

    @flow.step("ship", depends_on=["charge"], condition=lambda up: not up["charge"]["declined"])
    def ship(inp, up): ...

    flow.spawn({"order": 7})
    ```

    Args:
        name: the flow's task name (its steps' tasks are `<name>.<step>`).
        app: the app the flow's task and its steps' tasks are registered on.
        on_failure: a step run (as a child task) when a step fails or is
            cancelled, before the flow fails with `FlowFailed`; it is not part
            of the graph (no dependencies, no condition) and its `up` holds the
            finished steps' results plus `up["$failed"]`.
        queue: the queue of the flow's task and of steps without their own
            (default: the app's).

    Raises:
        InvalidArgument: a blank name, or a task of that name is registered.
    """

    def __init__(
        self, name: str, *, app: App, on_failure: str | None = None, queue: str | None = None
    ) -> None:
        self.name = _validate.name(name, "flow name")
        self.app = app
        self.queue = None if queue is None else _validate.queue_name(queue)
        self.on_failure = None if on_failure is None else self._step_name(on_failure, "on_failure")
        self._steps: dict[str, FlowStep] = {}
        if app.get_task(self.name) is not None:
            raise InvalidArgument(f"flow {self.name!r}: a task of that name is already registered")
        self.task: Task = app.task(self.name, queue=self.queue)(self._run)

    def __repr__(self) -> str:
        return f"<teguh flow {self.name!r}: {len(self._steps)} steps>"

    @property
    def steps(self) -> dict[str, FlowStep]:
        """The declared steps by name, in declaration order (a copy)."""
        return dict(self._steps)

    def _step_name(self, value: Any, field: str) -> str:
        value = _validate.name(value, field)
        if value.startswith("$"):
            raise InvalidArgument(f"flow {self.name!r}: {field} {value!r} must not start with '$' (reserved)")
        return value

    # -- definition -----------------------------------------------------------

    def step(
        self,
        name: str,
        *,
        depends_on: Iterable[str] = (),
        condition: Callable[[dict[str, Any]], bool] | None = None,
        queue: str | None = None,
        **spawn_defaults: Any,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Declare the decorated function `fn(inp, up)` (or `fn(inp, up, ctx)`) as step `name`.

        `up` maps each finished dependency to its result (a skipped one is
        absent). `condition(up)`, evaluated when the dependencies are done,
        decides whether the step runs (else it is skipped); a step whose
        dependencies were all skipped is skipped too. `queue` and
        `spawn_defaults` (`max_attempts`, `retry_strategy`, ...) apply to the
        step's task, `<flow>.<name>`. Returns the function unchanged.

        Raises:
            InvalidArgument: a duplicate or reserved name, a step depending on
                itself or closing a cycle (the error names the cycle), a
                condition that is not callable. Nothing is registered then.
        """
        name = self._step_name(name, "step name")
        if isinstance(depends_on, str):
            raise TypeError(f"flow {self.name!r}: depends_on of step {name!r} must be a list of step names")
        deps = tuple(dict.fromkeys(self._step_name(d, "depends_on") for d in depends_on))
        if name in self._steps:
            raise InvalidArgument(f"flow {self.name!r}: step {name!r} is declared twice")
        if name == self.on_failure and (deps or condition is not None):
            raise InvalidArgument(
                f"flow {self.name!r}: the on_failure step {name!r} runs after a failure, "
                "outside the graph: it takes no depends_on or condition"
            )
        if name in deps:
            raise InvalidArgument(f"flow {self.name!r}: step {name!r} depends on itself")
        if self.on_failure is not None and self.on_failure in deps:
            raise InvalidArgument(
                f"flow {self.name!r}: step {name!r} depends on the on_failure step {self.on_failure!r}, "
                "which runs only after a failure"
            )
        if condition is not None and not callable(condition):
            raise InvalidArgument(f"flow {self.name!r}: condition of step {name!r} must be callable")
        cycle = self._cycle_through(name, deps)
        if cycle:
            raise InvalidArgument(
                f"flow {self.name!r}: cycle {' -> '.join(cycle)} (each step depends on the next)"
            )
        if queue is not None:
            queue = _validate.queue_name(queue)
        task_name = f"{self.name}.{name}"

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            takes_ctx = _takes_context(fn)
            if self.app.get_task(task_name) is not None:
                raise InvalidArgument(f"flow {self.name!r}: a task named {task_name!r} is already registered")

            def run_step(params: dict[str, Any], ctx: TaskContext) -> Any:
                args = (params["input"], params["up"], ctx) if takes_ctx else (params["input"], params["up"])
                return fn(*args)

            run_step.__name__ = run_step.__qualname__ = f"flow_step_{name}"
            self.app.task(task_name, queue=queue or self.queue, **spawn_defaults)(run_step)
            self._steps[name] = FlowStep(name, deps, condition, fn, task_name, queue or self.queue)
            return fn

        return register

    def _cycle_through(self, name: str, deps: tuple[str, ...]) -> list[str] | None:
        """The cycle that declaring `name` with `deps` would close, as a path from `name` back to it."""

        def deps_of(step: str) -> tuple[str, ...]:
            if step == name:
                return deps
            found = self._steps.get(step)
            return found.depends_on if found is not None else ()

        path: list[str] = [name]
        seen: set[str] = set()

        def walk(step: str) -> bool:
            for dep in deps_of(step):
                if dep == name:
                    path.append(name)
                    return True
                if dep in seen:
                    continue
                seen.add(dep)
                path.append(dep)
                if walk(dep):
                    return True
                path.pop()
            return False

        return path if walk(name) else None

    def validate(self) -> None:
        """Check the whole graph: every dependency and the `on_failure` step are declared.

        `spawn()` and the flow's handler call it; call it in a test to catch a
        typo without spawning.

        Raises:
            InvalidArgument: no step, an unknown dependency, or an unknown
                `on_failure` step.
        """
        graph = [s for s in self._steps.values() if s.name != self.on_failure]
        if not graph:
            raise InvalidArgument(f"flow {self.name!r} has no steps")
        for step in graph:
            unknown = ", ".join(repr(d) for d in step.depends_on if d not in self._steps)
            if unknown:
                raise InvalidArgument(
                    f"flow {self.name!r}: step {step.name!r} depends on unknown step(s) {unknown}"
                )
        if self.on_failure is not None and self.on_failure not in self._steps:
            raise InvalidArgument(f"flow {self.name!r}: on_failure names unknown step {self.on_failure!r}")

    def order(self) -> list[str]:
        """The graph's steps in topological order (declaration order among ready ones), without on_failure."""
        self.validate()
        graph = {n: s for n, s in self._steps.items() if n != self.on_failure}
        placed: dict[str, None] = {}
        while len(placed) < len(graph):
            for n, s in graph.items():
                if n not in placed and all(d in placed for d in s.depends_on):
                    placed[n] = None
                    break
        return list(placed)

    # -- spawning -------------------------------------------------------------

    def spawn(self, inp: Any = None, **spawn_options: Any) -> SpawnResult:
        """Spawn the flow's task with input `inp`; takes `App.spawn_task`'s options (`conn=`, `queue=`, ...).

        Raises:
            InvalidArgument: the graph is incomplete (see `validate`); nothing is written.
        """
        self.validate()
        return self.app.spawn_task(self.name, inp, **spawn_options)

    # -- running ----------------------------------------------------------------
    #
    # The handler replays from the top each time the flow task runs again (a
    # wave's children ended, or a crash): the order, the conditions (from
    # their checkpoints), the spawns (idempotent) and the gathered results
    # come out the same, so no finished step runs twice.

    def _run(self, inp: Any, ctx: TaskContext) -> dict[str, Any]:
        """The flow task's handler: run the graph in waves of child tasks; returns `{step: result}`."""
        order = self.order()
        done: dict[str, Any] = {}  # completed step -> its result
        skipped: set[str] = set()
        while len(done) + len(skipped) < len(order):
            wave = self._next_wave(ctx, inp, order, done, skipped)
            if wave:
                self._run_wave(ctx, inp, wave, done)
        return {name: done[name] for name in order if name in done}

    def _next_wave(
        self, ctx: TaskContext, inp: Any, order: list[str], done: dict[str, Any], skipped: set[str]
    ) -> list[tuple[FlowStep, dict[str, Any]]]:
        """Decide every step whose dependencies all ended: skip it (in `skipped`) or put it in the wave."""
        decided = set(done) | skipped
        wave: list[tuple[FlowStep, dict[str, Any]]] = []
        for name in order:  # topological: a skip here can decide a later step in the same pass
            step = self._steps[name]
            if name in decided or not all(d in decided for d in step.depends_on):
                continue
            up = {d: done[d] for d in step.depends_on if d in done}
            # a step whose dependencies were all skipped is skipped, its condition unasked
            if (step.depends_on and not up) or not self._holds(ctx, inp, done, step, up):
                skipped.add(name)
                decided.add(name)
            else:
                wave.append((step, up))
        return wave

    def _holds(
        self, ctx: TaskContext, inp: Any, done: dict[str, Any], step: FlowStep, up: dict[str, Any]
    ) -> bool:
        """The step's condition, checkpointed so a replay decides as the first run did (raising fails it)."""
        condition = step.condition
        if condition is None:
            return True

        def decide() -> dict[str, Any]:
            # an error is recorded like a decision, so a replay fails the step the same way
            try:
                return {"holds": bool(condition(up))}
            except Exception as exc:
                logger.warning("flow %s: the condition of step %s raised %r", self.name, step.name, exc)
                return {"error": {"type": type(exc).__name__, "message": str(exc)}}

        decision = ctx.step(_CONDITION_STEP.format(step.name), decide)
        if "error" in decision:
            self._fail(ctx, inp, done, step.name, "failed", decision["error"])
        return bool(decision.get("holds"))

    def _run_wave(
        self, ctx: TaskContext, inp: Any, wave: list[tuple[FlowStep, dict[str, Any]]], done: dict[str, Any]
    ) -> None:
        """Spawn the wave's steps as children and gather them into `done`; a failure fails the flow."""
        children = [
            ctx.spawn_task(step.task_name, {"input": inp, "up": up}, queue=step.queue or ctx.queue)
            for step, up in wave
        ]
        try:
            results = ctx.gather(children)
        except ChildFailed as exc:
            names = {child.task_id: step.name for (step, _), child in zip(wave, children, strict=True)}
            # the wave's other steps end first, so on_failure sees every result there is
            for (step, _), child in zip(wave, children, strict=True):
                if child.task_id != exc.task_id:
                    with contextlib.suppress(ChildFailed):
                        done[step.name] = ctx.wait_for(child)
            self._fail(ctx, inp, done, names[exc.task_id], exc.state, exc.failure)
        for (step, _), result in zip(wave, results, strict=True):
            done[step.name] = result

    def _fail(
        self, ctx: TaskContext, inp: Any, done: Mapping[str, Any], step: str, state: str, failure: Any
    ) -> None:
        """Run the on_failure step (if any) as a child, then fail the flow for good (`FlowFailed`)."""
        message = failure.get("message") if isinstance(failure, Mapping) else None
        text = f"flow {self.name!r}: step {step!r} {state}" + (f": {message}" if message else "")
        if self.on_failure is not None:
            handler = self._steps[self.on_failure]
            up = {**done, FAILED_KEY: {"step": step, "state": state, "failure": failure}}
            child = ctx.spawn_task(
                handler.task_name, {"input": inp, "up": up}, queue=handler.queue or ctx.queue
            )
            try:
                ctx.wait_for(child)
            except ChildFailed as exc:
                text += f" (and its on_failure step {self.on_failure!r} {exc.state})"
        raise FlowFailed(text, step=step, state=state, failure=failure)
