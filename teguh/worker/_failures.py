"""Failure reasons the database can always store, whatever the exception looks like.

A handler may raise anything: a message of megabytes, a `__str__` that
raises, text with NUL characters or lone surrogates (which jsonb refuses), a
cause chain too deep to format. Losing the failure because of its reason would
let the task retry without a trace, so every function here truncates or
escapes instead of raising.
"""

from __future__ import annotations

import traceback
from typing import Any

MAX_FAILURE_MESSAGE_CHARS = 8 * 1024
"""A failure reason's `message` is cut to this many characters (the cut is marked)."""

MAX_FAILURE_TRACEBACK_CHARS = 64 * 1024
"""A failure reason's `traceback` keeps this many characters: its start and its end.

A failure is always recorded: an oversized, unprintable or unencodable
exception is truncated or escaped, never a reason to lose the failure.
"""


def clean_text(text: str, limit: int, *, keep_tail: bool = False) -> str:
    """Make `text` storable in jsonb and at most about `limit` characters long.

    NUL becomes the two characters `\\0`, lone surrogates are backslash-escaped;
    an over-long text keeps its start (and its end with `keep_tail`) around a marker.
    """
    if "\x00" in text:
        text = text.replace("\x00", "\\0")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    if keep_tail:
        head = limit // 4
        return f"{text[:head]}\n... [{cut} characters cut] ...\n{text[head + cut :]}"
    return f"{text[:limit]}... [{cut} characters cut]"


def safe_str(exc: BaseException) -> str:
    """`str(exc)`, or a placeholder naming what went wrong when the exception's `__str__` fails."""
    try:
        text = str(exc)
    except BaseException as err:  # a broken __str__ must not lose the failure
        return f"<str() of the exception failed: {type(err).__name__}>"
    return text if isinstance(text, str) else repr(text)


def reason_of(exc: BaseException) -> dict[str, Any]:
    """The failure reason stored for an exception: its type, message and traceback.

    Never raises, and the result always encodes as JSON: messages and
    tracebacks are truncated (MAX_FAILURE_MESSAGE_CHARS, MAX_FAILURE_TRACEBACK_CHARS)
    and cleaned of what jsonb cannot store.
    """
    try:
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except BaseException as err:  # e.g. RecursionError on a pathological cause chain
        trace = f"<the traceback could not be formatted: {type(err).__name__}>"
    return {
        "type": clean_text(type(exc).__name__, 200),
        "module": clean_text(type(exc).__module__, 400),  # with "type": the import path (django.tasks)
        "message": clean_text(safe_str(exc), MAX_FAILURE_MESSAGE_CHARS),
        "traceback": clean_text(trace, MAX_FAILURE_TRACEBACK_CHARS, keep_tail=True),
    }
