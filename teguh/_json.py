"""Strict JSON encoding for values stored in jsonb columns.

Everything teguh writes as JSON (params, headers, results, event payloads, step
states, failure reasons) passes through `dumps`, so a bad value is rejected in
Python, with the offending field named, before any SQL runs.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import InvalidArgument, PayloadTooLarge

DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
"""The largest JSON value (UTF-8 bytes) a client accepts for params, results, payloads and states.

Large values bloat every claim and checkpoint read; store big data elsewhere and
pass a reference. A `Client` can raise or lower it through `max_payload_bytes`.
"""


def _find_nul(value: Any, path: str) -> str | None:
    """The path of the first string (key or value) holding U+0000, if any."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and "\x00" in key:
                return f"{path} (a key)"
            found = _find_nul(item, f"{path}[{key!r}]")
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _find_nul(item, f"{path}[{index}]")
            if found:
                return found
    return None


def dumps(value: Any, field: str, *, max_bytes: int | None = DEFAULT_MAX_PAYLOAD_BYTES) -> str:
    """Serialise `value` for a jsonb parameter, refusing what PostgreSQL cannot store.

    Args:
        value: any JSON value (None becomes JSON `null`).
        field: the argument's name, used in error messages.
        max_bytes: the size limit in UTF-8 bytes, or None for none.

    Raises:
        TypeError: the value holds something JSON cannot represent (a set, an object).
        InvalidArgument: NaN or infinity, a circular reference, a string holding
            U+0000 or a lone surrogate (jsonb stores neither).
        PayloadTooLarge: the encoded value exceeds `max_bytes`.
    """
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except TypeError as exc:
        raise TypeError(f"{field} is not JSON serialisable: {exc}") from exc
    except ValueError as exc:  # NaN/Infinity, circular references
        raise InvalidArgument(f"{field} is not valid JSON: {exc}") from exc
    if "\\u0000" in text:
        where = _find_nul(value, field)
        if where is not None:
            raise InvalidArgument(f"{where} contains a NUL character (U+0000), which jsonb cannot store")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidArgument(f"{field} contains a lone surrogate, which jsonb cannot store") from exc
    if max_bytes is not None and size > max_bytes:
        raise PayloadTooLarge(f"{field} is {size} bytes of JSON, above the limit of {max_bytes} bytes")
    return text
