"""The values client calls return: frozen dataclasses, safe to share between threads."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "TASK_STATES",
    "TERMINAL_STATES",
    "AttemptInfo",
    "ClaimedRun",
    "EmitResult",
    "QueueStats",
    "SpawnResult",
    "StepInfo",
    "TaskInfo",
    "TaskResult",
    "TaskType",
    "WorkerInfo",
]

TASK_STATES = ("pending", "running", "sleeping", "completed", "failed", "cancelled")
"""Every state a task can be in (the values the engine writes to t_<q>.state)."""

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


# --- operations (read side) ---


@dataclass(frozen=True)
class StepInfo:
    """One stored checkpoint of a task (`TaskInfo.steps`): a step's value, a sleep or an event wait.

    `value` is what the step stored (for a sleep, its wake time; for an event
    wait, the event's payload); `status` is "committed" or "timed_out";
    `kind` is "step", "sleep" or "event"; `updated_at` is when it was stored.
    """

    name: str
    value: Any
    status: str
    kind: str
    updated_at: datetime


@dataclass(frozen=True)
class AttemptInfo:
    """One failed attempt of a task (`TaskInfo.attempt_history`), kept for the task's last 25.

    `reason` is the failure as stored (JSON: type, message, traceback...; a
    lease that expired has type "$ClaimTimeout" and names the worker that
    lost it). `worker_id` and `started_at` are the run's lease holder and
    claim time (None for failures recorded before the history existed).
    `final` is True for the attempt that failed the task for good.
    """

    attempt: int
    run_id: str
    worker_id: str | None
    started_at: datetime | None
    ended_at: datetime
    reason: Any
    final: bool


@dataclass(frozen=True, kw_only=True)
class TaskInfo(TaskResult):
    """Everything about one task (`Client.get_task`), or a row of `Client.list_tasks`.

    A `TaskResult` (state, attempts, result, failure...) plus the task's
    inputs, timestamps, lease, waits, steps and failed attempts. Rows of
    `list_tasks` leave `steps` and `attempt_history` empty and `claimed_by`,
    `claimed_at`, `wait_step` None (one light query for a page of tasks);
    `get_task` fills them. `wake_at` is when a sleeping task wakes (or a
    delayed one becomes claimable), `awaited_event` the event a sleeping task
    waits for.
    """

    task_name: str
    params: Any
    headers: dict[str, Any] | None
    priority: int
    max_attempts: int | None
    enqueued_at: datetime
    first_started_at: datetime | None
    available_at: datetime | None
    wake_at: datetime | None = None
    awaited_event: str | None = None
    wait_step: str | None = None
    claimed_by: str | None = None
    claimed_at: datetime | None = None
    steps: tuple[StepInfo, ...] = field(default_factory=tuple)
    attempt_history: tuple[AttemptInfo, ...] = field(default_factory=tuple)
    # parent_task_id and progress come from t_<q> columns that the composition
    # feature adds; None until those columns are read here.
    parent_task_id: str | None = None
    progress: Any = None
    # the task's queue: set by `Client.list_children` (a parent's children
    # may live on several queues); None from get_task and list_tasks
    queue: str | None = None


@dataclass(frozen=True)
class QueueStats:
    """A queue's counts (`Client.queue_stats`).

    `pending` counts tasks claimable now and delayed ones; `oldest_pending_age`
    is how long (seconds) the longest-waiting claimable task has waited, None
    when none waits. `completed_last_*` count completions committed by teguh
    workers (reported by their heartbeats, so up to one beat late);
    `failed_last_*` count tasks that failed for good. When `estimated` is True
    (a queue over 100,000 tasks) `completed` and `cancelled` are estimates
    from PostgreSQL's statistics; every other count is exact.
    """

    queue: str
    pending: int
    running: int
    sleeping: int
    completed: int
    failed: int
    cancelled: int
    oldest_pending_age: float | None
    completed_last_minute: int
    completed_last_hour: int
    failed_last_minute: int
    failed_last_hour: int
    estimated: bool

    @property
    def counts(self) -> dict[str, int]:
        """The count of each state, by state name."""
        return {
            "pending": self.pending,
            "running": self.running,
            "sleeping": self.sleeping,
            "completed": self.completed,
            "failed": self.failed,
            "cancelled": self.cancelled,
        }


@dataclass(frozen=True)
class WorkerInfo:
    """A live worker (`Client.list_workers`), as its last heartbeat registered it.

    `instance_id` names one `Worker.run()` (two workers of a process share a
    `worker_id`, the name on their leases). `version` is teguh's,
    `app_version` the app's (`App(version=...)`). `running` is the runs in
    flight at the last beat (`last_seen_at`); the row is gone once
    `expires_at` passes without a beat (a few missed beats).
    """

    instance_id: str
    worker_id: str
    host: str | None
    pid: int | None
    queues: tuple[str, ...]
    concurrency: int
    running: int
    version: str | None
    app_version: str | None
    started_at: datetime
    last_seen_at: datetime
    expires_at: datetime
