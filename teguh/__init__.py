"""teguh: a durable execution engine and job queue for Python on PostgreSQL alone.

Start with `Client` (the low-level API mirroring the SQL functions) and
`install` (puts the schema in a database). Control-flow signals (`Suspended`,
`Cancelled`, `LeaseLost`, `TimeoutExceeded`) derive from `BaseException`; every
other error derives from `TeguhError`, including the ones a handler raises to
steer its retries (`NonRetryable`, `RetryAfter`, `Snooze`).
"""

import logging

from ._version import __version__
from .app import App, Task
from .client import ClaimedRun, Client, EmitResult, SpawnResult, TaskResult, TaskType, install, schema_sql
from .context import TaskContext
from .errors import (
    Cancelled,
    CannotConnect,
    ConnectionLost,
    EventTimeout,
    InvalidArgument,
    InvalidQueueName,
    LeaseLost,
    NoDatabaseConfigured,
    NonRetryable,
    PayloadTooLarge,
    PermissionDenied,
    QueueNotFound,
    RetryAfter,
    ScheduleNotFound,
    SchemaNotInstalled,
    Snooze,
    Suspended,
    TaskNotFound,
    TeguhError,
    TimeoutExceeded,
)
from .results import AttemptInfo, QueueStats, StepInfo, TaskInfo, WorkerInfo
from .retry import Exponential, Fixed, NoRetry
from .schedules import ScheduleInfo
from .worker import Worker

__all__ = [
    # Apps, handlers and workers
    "App",
    "Task",
    "TaskContext",
    "Worker",
    # The client and the schema
    "Client",
    "install",
    "schema_sql",
    # Results
    "SpawnResult",
    "ClaimedRun",
    "EmitResult",
    "TaskResult",
    "TaskType",
    "TaskInfo",
    "StepInfo",
    "AttemptInfo",
    "QueueStats",
    "WorkerInfo",
    "ScheduleInfo",
    # Retry strategies
    "Fixed",
    "Exponential",
    "NoRetry",
    # Errors
    "TeguhError",
    "TaskNotFound",
    "QueueNotFound",
    "InvalidQueueName",
    "InvalidArgument",
    "PayloadTooLarge",
    "PermissionDenied",
    "EventTimeout",
    "SchemaNotInstalled",
    "ConnectionLost",
    "CannotConnect",
    "NoDatabaseConfigured",
    "ScheduleNotFound",
    # Raised by handlers to steer retries (TeguhError)
    "NonRetryable",
    "RetryAfter",
    "Snooze",
    # Control-flow signals (BaseException, not errors)
    "Suspended",
    "Cancelled",
    "LeaseLost",
    "TimeoutExceeded",
    "__version__",
]

logging.getLogger("teguh").addHandler(logging.NullHandler())
