"""The worker: claims runs of one queue (or several) and executes their handlers in threads.

A package of parts with one job each; `Worker` (in `_worker`) wires them
together. This module keeps every name `teguh.worker` exported before it
became a package.
"""

from ._config import (
    DEFAULT_CLAIM_TIMEOUT,
    DEFAULT_CONCURRENCY,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_SHUTDOWN_TIMEOUT,
    MAX_HEARTBEAT_INTERVAL,
    default_worker_id,
)
from ._execute import (
    COMPLETION_RETRY_SECONDS,
    DEFAULT_BACKOFF_BASE,
    DEFAULT_BACKOFF_MAX,
    TRANSIENT_SQLSTATES,
    UNKNOWN_TASK_RETRY_SECONDS,
)
from ._failures import MAX_FAILURE_MESSAGE_CHARS, MAX_FAILURE_TRACEBACK_CHARS
from ._heartbeat import EXIT_STUCK
from ._protocols import WorkerApp
from ._worker import MIN_IDLE_WAIT, Worker

__all__ = [
    "Worker",
    "WorkerApp",
    "default_worker_id",
    "EXIT_STUCK",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_CLAIM_TIMEOUT",
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "DEFAULT_BACKOFF_BASE",
    "DEFAULT_BACKOFF_MAX",
    "MAX_HEARTBEAT_INTERVAL",
    "MIN_IDLE_WAIT",
    "COMPLETION_RETRY_SECONDS",
    "UNKNOWN_TASK_RETRY_SECONDS",
    "TRANSIENT_SQLSTATES",
    "MAX_FAILURE_MESSAGE_CHARS",
    "MAX_FAILURE_TRACEBACK_CHARS",
]
