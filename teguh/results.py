"""The values client calls return: frozen dataclasses, safe to share between threads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["TERMINAL_STATES", "ClaimedRun", "SpawnResult", "TaskResult", "TaskType"]

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
    """A task's state and outcome; `failure` is the last failure reason (JSON)."""

    task_id: str
    state: str
    attempts: int
    result: Any
    failure: Any
    cancelled_at: datetime | None
    finished_at: datetime | None

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
