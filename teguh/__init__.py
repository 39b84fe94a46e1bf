"""teguh: a durable execution engine and job queue for Python on PostgreSQL alone.

Start with `Client` (the low-level API mirroring the SQL functions) and
`install` (puts the schema in a database). Control-flow signals (`Suspended`,
`Cancelled`, `LeaseLost`) derive from `BaseException`; every other error derives
from `TeguhError`.
"""

import logging

from ._version import __version__
from .app import App, Task
from .client import ClaimedRun, Client, SpawnResult, TaskResult, TaskType, install, schema_sql
from .context import TaskContext
from .errors import (
    Cancelled,
    ConnectionLost,
    EventTimeout,
    InvalidArgument,
    InvalidQueueName,
    LeaseLost,
    NoDatabaseConfigured,
    PayloadTooLarge,
    PermissionDenied,
    QueueNotFound,
    SchemaNotInstalled,
    Suspended,
    TaskNotFound,
    TeguhError,
)
from .retry import Exponential, Fixed, NoRetry
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
    "TaskResult",
    "TaskType",
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
    "NoDatabaseConfigured",
    # Control-flow signals (BaseException, not errors)
    "Suspended",
    "Cancelled",
    "LeaseLost",
    "__version__",
]

logging.getLogger("teguh").addHandler(logging.NullHandler())
