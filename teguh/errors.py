"""Exceptions raised by teguh, and the mapping from database errors to them.

Two families live here:

* `TeguhError` (an `Exception`) is the root of every error a caller may want to
  handle: bad input, unknown queues or tasks, a missing schema, a lost connection.
* `Suspended`, `Cancelled`, `LeaseLost` and `TimeoutExceeded` are control-flow
  signals that teguh raises *into* a handler. They derive from
  `BaseException`, so a task handler's broad `except Exception:` cannot
  swallow them; the worker unwinds the handler on any of them.

A third group steers retries: `NonRetryable`, `RetryAfter` and `Snooze` are
raised *by* a handler to tell the worker what to do with the task. They are
`TeguhError`s (so plain `Exception`s): the handler raises them on purpose.

Every exception carries its subject as data (`queue`, `task_id`, `run_id`), not
only in its message. A class's docstring first line is its default message.
"""

from __future__ import annotations

import math
import sys
from datetime import datetime, timedelta
from typing import Any

__all__ = [
    "TeguhError",
    "TaskNotFound",
    "QueueNotFound",
    "InvalidQueueName",
    "InvalidArgument",
    "PayloadTooLarge",
    "EventTimeout",
    "SchemaNotInstalled",
    "ConnectionLost",
    "CannotConnect",
    "PermissionDenied",
    "NoDatabaseConfigured",
    "Suspended",
    "Cancelled",
    "LeaseLost",
    "TimeoutExceeded",
    "NonRetryable",
    "ChildFailed",
    "ChildTimeout",
    "RetryAfter",
    "Snooze",
    "is_connection_lost",
    "map_db_error",
    "sqlstate",
]


class _Details:
    """Shared constructor: a message (defaulting to the docstring) plus data attributes."""

    queue: str | None
    task_id: str | None
    run_id: str | None
    pgcode: str | None

    def _init_details(
        self,
        message: str | None,
        *,
        queue: str | None = None,
        task_id: Any = None,
        run_id: Any = None,
        pgcode: str | None = None,
    ) -> str:
        self.queue = queue
        self.task_id = None if task_id is None else str(task_id)
        self.run_id = None if run_id is None else str(run_id)
        self.pgcode = pgcode
        if message is None:
            message = (type(self).__doc__ or type(self).__name__).strip().splitlines()[0]
        return message


class TeguhError(Exception, _Details):
    """A teguh operation failed."""

    def __init__(
        self,
        message: str | None = None,
        *,
        queue: str | None = None,
        task_id: Any = None,
        run_id: Any = None,
        pgcode: str | None = None,
    ) -> None:
        super().__init__(
            self._init_details(message, queue=queue, task_id=task_id, run_id=run_id, pgcode=pgcode)
        )


class TaskNotFound(TeguhError):
    """No task with this id exists in the queue (SQLSTATE TG003)."""


class BatchNotFound(TeguhError, LookupError):
    """No batch with this id exists (SQLSTATE TGB01); see `Client.get_batch`."""


class QueueNotFound(TeguhError):
    """The queue does not exist; create it with `create_queue` or `teguh queue create` (TG002)."""


class InvalidQueueName(TeguhError, ValueError):
    """Queue names match ^[a-z][a-z0-9_]*$ and are at most 55 bytes (TG001)."""


class InvalidArgument(TeguhError, ValueError):
    """An argument is out of range or malformed (TG004)."""


class PayloadTooLarge(InvalidArgument):
    """A JSON value (params, headers, result, payload or state) exceeds a size limit (TG005 on the server)."""


class EventTimeout(TeguhError, TimeoutError):
    """The awaited event was not emitted before the wait's timeout elapsed."""

    event_name: str | None = None
    step_name: str | None = None


class SchemaNotInstalled(TeguhError):
    """The teguh schema is not installed in this database: run `teguh install`."""

    installed_version: str | None = None
    expected_version: str | None = None


class ConnectionLost(TeguhError):
    """The connection to PostgreSQL failed or was lost.

    When it is raised by a call that changes state, the call may or may not have
    taken effect: check before repeating it (an idempotency key makes spawns safe
    to repeat).
    """


class CannotConnect(ConnectionLost):
    """PostgreSQL refused the connection for a reason no retry can fix.

    The database, role or host does not exist, the password is wrong or
    missing, pg_hba.conf or the TLS settings reject the connection. Raised at
    once, without retries; nothing was sent, so the call had no effect. A
    `ConnectionLost`, so code catching that catches this too.
    """


class PermissionDenied(TeguhError):
    """The database role may not do this (SQLSTATE 42501); see docs/roles.md for the grants."""


class NoDatabaseConfigured(TeguhError):
    """No database is configured and the embedded PostgreSQL (`teguh[embedded]`) is not installed."""


class _Signal(BaseException, _Details):
    """Base of the control-flow signals (not errors)."""

    def __init__(
        self,
        message: str | None = None,
        *,
        queue: str | None = None,
        task_id: Any = None,
        run_id: Any = None,
        pgcode: str | None = None,
    ) -> None:
        super().__init__(
            self._init_details(message, queue=queue, task_id=task_id, run_id=run_id, pgcode=pgcode)
        )


class Suspended(_Signal):
    """The task is sleeping or waiting for an event; its run ended without completing.

    A `BaseException`, so a handler's `except Exception:` cannot swallow it.
    """


class Cancelled(_Signal):
    """The task has been cancelled; the run must stop (SQLSTATE AB001).

    A `BaseException`, so a handler's `except Exception:` cannot swallow it.
    """


class LeaseLost(_Signal):
    """This run no longer holds its task: it expired and another run took over (AB002).

    A `BaseException`, so a handler's `except Exception:` cannot swallow it.
    """


class TimeoutExceeded(_Signal):
    """The run outlived its task's `timeout`; the attempt fails with reason `$Timeout`.

    Raised asynchronously into the handler's thread at the deadline, so it
    interrupts Python code but not a blocking C call (docs/handlers.md). A
    `BaseException`, so a handler's `except Exception:` cannot swallow it.
    """


# -- steering retries ---------------------------------------------------------------


def _delay(value: Any, field: str) -> float | datetime:
    """A delay as seconds (number or timedelta, >= 0) or an aware datetime."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            raise InvalidArgument(f"{field} must be timezone-aware (for example datetime.now(timezone.utc))")
        return value
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise InvalidArgument(
            f"{field} must be seconds, a timedelta or an aware datetime, not {type(value).__name__}"
        )
    if not math.isfinite(seconds) or not 0 <= seconds < MAX_DELAY_SECONDS:
        raise InvalidArgument(
            f"{field} must be a finite number of seconds >= 0 (under 100 years), not {value!r}"
        )
    return float(seconds)


def _describe(delay: float | datetime) -> str:
    return delay.isoformat() if isinstance(delay, datetime) else f"{delay:g} s"


MAX_DELAY_SECONDS = 3153600000
"""The longest delay `RetryAfter` and `Snooze` take (100 years, the engine's limit)."""


class NonRetryable(TeguhError):
    """The task failed and must not be retried.

    Raise it in a handler (`raise teguh.NonRetryable("bad input") from exc`):
    the task fails now, whatever attempts are left. Its failure reason has
    `"non_retryable": true`.
    """


class ChildFailed(NonRetryable):
    """A child task a handler waited for (`ctx.wait_for`, `gather`, `map`) failed or was cancelled.

    Attributes: `task_id` (the child's), `queue` (the child's), `state`
    (`"failed"` or `"cancelled"`) and `failure` (the child's failure reason,
    a dict, or None). It derives from `NonRetryable`: uncaught, the parent
    fails at once, since a retry would read the same stored outcome; catch
    it to compensate or go on without the child.
    """

    state: str | None = None
    failure: Any = None

    def __init__(
        self,
        message: str | None = None,
        *,
        state: str | None = None,
        failure: Any = None,
        **details: Any,
    ) -> None:
        super().__init__(message, **details)
        self.state = state
        self.failure = failure


class ChildTimeout(TeguhError, TimeoutError):
    """`ctx.wait_for`, `gather` or `map` waited longer than its `timeout` for its children.

    `pending` lists the ids of the children that had not ended then (None on
    a replay, which reads the timeout from the step's checkpoint). The
    children keep running; cancel them with `Client.cancel_task` if needed.
    """

    step_name: str | None = None
    pending: list[str] | None = None


class RetryAfter(TeguhError):
    """This attempt failed; retry the task after `delay`, whatever its strategy says.

    The attempt counts: on the task's last attempt the task fails.

    Args:
        delay: seconds (int or float >= 0), a timedelta, or an aware datetime
            (the moment of the next attempt).
        message: why (stored in the failure reason).

    Raises:
        InvalidArgument: a negative or non-finite delay, or a naive datetime.
    """

    def __init__(self, delay: Any, message: str | None = None, **details: Any) -> None:
        self.delay = _delay(delay, "RetryAfter delay")
        super().__init__(message or f"retry after {_describe(self.delay)}", **details)


class Snooze(TeguhError):
    """Not yet: put the task back to wait for `delay` without using an attempt.

    For "not now" conditions (a rate-limited partner, a resource not ready).
    The task's `snoozes` counter (`TaskResult.snoozes`) goes up by one.

    Args:
        delay: seconds (int or float >= 0), a timedelta, or an aware datetime.
        message: why (logged).

    Raises:
        InvalidArgument: a negative or non-finite delay, or a naive datetime.
    """

    def __init__(self, delay: Any, message: str | None = None, **details: Any) -> None:
        self.delay = _delay(delay, "Snooze delay")
        super().__init__(message or f"snoozed for {_describe(self.delay)}", **details)



class ScheduleNotFound(TeguhError):
    """No schedule with this name exists (`Client.pause_schedule` and its siblings)."""

_BY_PGCODE: dict[str, type[BaseException]] = {
    "AB001": Cancelled,
    "AB002": LeaseLost,
    "TG001": InvalidQueueName,
    "TG002": QueueNotFound,
    "TG003": TaskNotFound,
    "TG004": InvalidArgument,
    "TG005": PayloadTooLarge,
    "TGB01": BatchNotFound,
    "42501": PermissionDenied,  # insufficient_privilege
    "42P01": SchemaNotInstalled,  # undefined_table
    "3F000": SchemaNotInstalled,  # invalid_schema_name
    "42883": SchemaNotInstalled,  # undefined_function: a schema older than the client
}


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error from either driver, else None.

    psycopg2 calls it `pgcode`, psycopg 3 `sqlstate` (a caller's psycopg 3
    connection given as `conn=` raises the latter).
    """
    code = getattr(exc, "pgcode", None)
    if code is None:
        code = getattr(exc, "sqlstate", None)
    return code if isinstance(code, str) else None


def is_connection_lost(exc: BaseException) -> bool:
    """Tell whether a psycopg2 (or psycopg 3) error means the connection itself failed.

    Only `InterfaceError`, and `OperationalError` without a SQLSTATE or with a
    class 08 (connection exception) or 57P (operator intervention) code count:
    `OperationalError` also covers errors such as program limits (class 54),
    which a retry cannot fix.
    """
    import psycopg2

    interface: tuple[type[BaseException], ...] = (psycopg2.InterfaceError,)
    operational: tuple[type[BaseException], ...] = (psycopg2.OperationalError,)
    # psycopg 3 is never imported here: an error of it means it is loaded already
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None:
        interface += (psycopg.InterfaceError,)
        operational += (psycopg.OperationalError,)
    if isinstance(exc, interface):
        return True
    if isinstance(exc, operational):
        code = sqlstate(exc)
        return code is None or code.startswith(("08", "57P"))
    return False


def error_message(exc: BaseException) -> str:
    """The primary message of a database error, without its `CONTEXT:` lines."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    if primary:
        return str(primary)
    lines = []
    for line in str(exc).splitlines():
        if line.startswith(("CONTEXT:", "PL/pgSQL function", "SQL statement", "SQL function")):
            break
        lines.append(line)
    text = " ".join(part.strip() for part in lines if part.strip())
    if text.startswith("ERROR:"):
        text = text[len("ERROR:") :].strip()
    return text or type(exc).__name__


def map_db_error(
    exc: BaseException,
    *,
    queue: str | None = None,
    task_id: Any = None,
    run_id: Any = None,
) -> BaseException:
    """Translate a psycopg2 or psycopg 3 error into the teguh exception for its SQLSTATE.

    Returns the new exception (the caller raises it `from exc`, so `__cause__` keeps
    the original), or `exc` itself when no mapping applies. Lost connections
    become `ConnectionLost`.
    """
    code = sqlstate(exc)
    message = error_message(exc)
    cls = _BY_PGCODE.get(code or "")
    if code == "42883":
        message = (
            f"the teguh schema in this database is older than this client ({message}): run `teguh install`"
        )
    elif cls is SchemaNotInstalled:
        message = f"the teguh schema is not installed in this database ({message}): run `teguh install`"
    elif cls is None:
        if is_connection_lost(exc):
            cls = ConnectionLost
            message = f"connection to PostgreSQL lost: {message}"
        else:
            return exc
    return cls(message, queue=queue, task_id=task_id, run_id=run_id, pgcode=code)
