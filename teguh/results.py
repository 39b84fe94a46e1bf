"""The values client calls return: frozen dataclasses, safe to share between threads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["TERMINAL_STATES", "ClaimedRun", "EmitResult", "SpawnResult", "TaskResult", "TaskType"]

TERMINAL_STATES = frozenset({"completed", "failed", "cancelled"})
"""Task states that never change again (except through `retry_task`)."""


@dataclass(frozen=True)
class SpawnResult:
    """What a spawn (or a manual retry) returns.

    `run_id` is None because runs are created at claim; `created` is False when an
    idempotency key matched an existing task (whose id is returned) or when a
    retry reused the task in place.
    """

    task_id: str
    run_id: str | None
    attempt: int
    created: bool


@dataclass(frozen=True)
class EmitResult:
    """What an emit did: events are kept per queue and the first emit of a name wins.

    `first` is True when this emit stored the payload (and woke the waiting
    tasks); then `emitted_at` is now. Otherwise an earlier emit of the name
    won: `emitted_at` is when it happened, and `payload_unchanged` says
    whether its payload equals this emit's (when it does not, this emit's
    payload was dropped). The result is truthy exactly when `first` is, so
    `if client.emit_event(...):` reads "if this emit was the first".
    """

    first: bool
    emitted_at: datetime
    payload_unchanged: bool

    def __bool__(self) -> bool:
        return self.first


@dataclass(frozen=True)
class ClaimedRun:
    """A run handed to a worker by `claim_task`: the lease's ids and the task's inputs."""

    run_id: str
    task_id: str
    attempt: int
    task_name: str
    params: Any
    retry_strategy: dict[str, Any] | None
    max_attempts: int | None
    headers: dict[str, Any] | None
    wake_event: str | None
    event_payload: Any


@dataclass(frozen=True)
class TaskResult:
    """A task's state and outcome; `failure` is the last failure reason (JSON).

    `snoozes` counts the times a handler put the task back with `teguh.Snooze`
    (which uses no attempt).
    """

    task_id: str
    state: str
    attempts: int
    result: Any
    failure: Any
    cancelled_at: datetime | None
    finished_at: datetime | None
    snoozes: int = 0

    @property
    def done(self) -> bool:
        """Whether the task reached a terminal state (completed, failed or cancelled)."""
        return self.state in TERMINAL_STATES


@dataclass(frozen=True)
class TaskType:
    """A task type a worker registered on a queue (`Client.list_task_types`).

    The spawn defaults (`max_attempts`, `retry_strategy`, `cancellation`,
    `priority`; None where the handler sets none) apply to every spawn of
    `name` on `queue` that does not give them, whoever spawns. `concurrency`,
    `key_concurrency` and `rate_limit` are the flow-control limits the handler
    declared. `version` is the registering app's; the last worker to start
    wrote the row (`updated_at`).
    """

    name: str
    queue: str
    max_attempts: int | None
    retry_strategy: dict[str, Any] | None
    cancellation: dict[str, Any] | None
    priority: int | None
    concurrency: int | None
    key_concurrency: int | None
    rate_limit: str | None
    version: str | None
    paused: bool
    registered_at: datetime
    updated_at: datetime
