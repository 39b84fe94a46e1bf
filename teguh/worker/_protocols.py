"""What the worker needs from the app whose handlers it runs, declared without importing it.

`teguh.App` builds workers (`App.worker()`), so the worker must not import
`teguh.app` back: `WorkerApp` names the members it uses instead.
`teguh.App` and its framework subclasses satisfy it; so can a test double.
`CompletionSink` lets the executor hand results to the completer without the
two modules importing each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..client import Client
    from ..context import TaskContext
    from ._inflight import Run


class WorkerApp(Protocol):
    """The app side of a `Worker`: its client, and finding and calling handlers.

    Optional members the worker reads with `getattr`: `hooks` (a
    `teguh._hooks.Hooks`, `App.on`'s registrations), `tasks`, `queue`,
    `queue_of` and `version`.
    """

    @property
    def client(self) -> Client:
        """The app's client: the worker copies its DSN, payload limit and session hooks."""
        ...

    def handler_for(self, task_name: str) -> Any:
        """The handler of `task_name` (a `teguh.app.Task`), or None when there is none."""
        ...

    def run_handler(self, task: Any, params: Any, ctx: TaskContext) -> Any:
        """Call the handler `handler_for` returned, with its hooks; returns its result."""
        ...

    def declared_queues(self) -> list[str]:
        """The queues the app names (its own, its tasks'): a worker creates only these unasked.

        Optional: a worker of an app without it creates no queue unless told to
        (`create_queue=True`).
        """
        ...


class CompletionSink(Protocol):
    """Where an executed run's result goes to be committed (the `Completer` thread)."""

    def submit(self, run: Run, text: str) -> None:
        """Queue `run`'s result, `text` being its JSON, for the next batched completion."""
        ...
