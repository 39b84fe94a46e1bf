"""Client-side checks that mirror the engine's, run before any SQL.

The SQL functions check the same rules (engine.md); checking here too gives a
precise Python error without a round trip and keeps bad values away from
indexes and `format('%I')`.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from .errors import InvalidArgument, InvalidQueueName

QUEUE_NAME_RE = re.compile(r"[a-z][a-z0-9_]*")
"""Queue names: a lowercase letter, then lowercase letters, digits and underscores."""

MAX_QUEUE_NAME_BYTES = 55
"""So that the channel `teguh_<queue>` stays within PostgreSQL's 63-byte identifiers."""

MAX_NAME_BYTES = 1024
"""Task, step and event names and idempotency keys (btree keys and NOTIFY payloads are bounded)."""


_BLANK = " \t\n\r\f\v"
"""What counts as blank: the ASCII whitespace the engine's `\\s` matches (so both sides agree)."""


def queue_name(queue: Any) -> str:
    """Check a queue name and return it.

    Raises:
        InvalidQueueName: the name breaks the pattern or the length limit.
    """
    if not isinstance(queue, str):
        raise InvalidQueueName(f"a queue name must be a str, not {type(queue).__name__}")
    if not QUEUE_NAME_RE.fullmatch(queue):
        raise InvalidQueueName(
            f"invalid queue name {queue!r}: it must match ^[a-z][a-z0-9_]*$ "
            "(lowercase letters, digits and underscores, starting with a letter)",
            queue=queue if len(queue) <= 200 else None,
        )
    if len(queue.encode("utf-8")) > MAX_QUEUE_NAME_BYTES:
        raise InvalidQueueName(
            f"invalid queue name {queue[:20]!r}...: at most {MAX_QUEUE_NAME_BYTES} bytes ({len(queue)} given)"
        )
    return queue


def name(value: Any, field: str) -> str:
    """Check a task, step or event name (or an idempotency key) and return it.

    Raises:
        TypeError: not a str.
        InvalidArgument: blank, longer than 1024 UTF-8 bytes, or holding NUL.
    """
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a str, not {type(value).__name__}")
    if not value.strip(_BLANK):
        raise InvalidArgument(f"{field} must not be blank")
    if "\x00" in value:
        raise InvalidArgument(f"{field} must not contain NUL characters")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidArgument(f"{field} contains a lone surrogate") from exc
    if size > MAX_NAME_BYTES:
        raise InvalidArgument(f"{field} is {size} bytes; the limit is {MAX_NAME_BYTES} bytes")
    return value


def task_uuid(value: Any, field: str) -> str:
    """Check a task or run id (a UUID, as str or uuid.UUID) and return its canonical string.

    Raises:
        InvalidArgument: not a UUID.
    """
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a UUID string, not {type(value).__name__}")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidArgument(f"{field} is not a UUID: {value[:60]!r}") from None


def integer(value: Any, field: str, *, minimum: int | None = None) -> int:
    """Check an int argument (bools are refused) and its lower bound.

    Raises:
        TypeError: not an int.
        InvalidArgument: below `minimum`, or beyond a 32-bit int.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field} must be an int, not {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise InvalidArgument(f"{field} must be >= {minimum}, not {value}")
    if value > 2**31 - 1:
        raise InvalidArgument(f"{field} is too large: {value}")
    return value
