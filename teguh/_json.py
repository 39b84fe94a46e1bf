"""Strict JSON encoding for values stored in jsonb columns.

Everything teguh writes as JSON (params, headers, results, event payloads, step
states, failure reasons) passes through `dumps`, so a bad value is rejected in
Python, with the offending field named, before any SQL runs.
"""

from __future__ import annotations

import json
from itertools import accumulate
from typing import Any

from .errors import InvalidArgument, PayloadTooLarge

DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
"""The largest JSON value (UTF-8 bytes) a client accepts for params, results, payloads and states.

Large values bloat every claim and checkpoint read; store big data elsewhere and
pass a reference. A `Client` can raise or lower it through `max_payload_bytes`.
"""


MAX_JSON_DEPTH = 256
"""The deepest nesting of arrays and objects accepted in a JSON value.

Python's `json` module recurses once per level, so a value nested about a
thousand levels deep cannot be encoded, or, worse, decoded by a worker reading
it back. The explicit cap keeps every stored value readable from any thread.
"""

_ENCODER = json.JSONEncoder(allow_nan=False, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
"""The one encoder `dumps` uses: `json.dumps` with these options would build a new one per call."""

_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def _too_deep(text: str, limit: int) -> bool:
    """Tell whether the JSON text (as `json.dumps` writes it) nests arrays and objects more than `limit` deep.

    Runs in C-level string operations: a batch of a thousand tasks is checked
    in a fraction of its encoding time.
    """
    if text.count("[") + text.count("{") <= limit:
        return False  # too few brackets to nest that deep: the common case costs two counts
    # Brackets inside strings do not count. With escaped backslashes and quotes
    # gone, every '"' delimits a string, so the even pieces are what lies outside.
    outside = "".join(text.replace("\\\\", "").replace('\\"', "").split('"')[0::2])
    brackets = outside.encode("utf-8", "surrogatepass").translate(None, _NOT_BRACKET)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > limit


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

    Keys are sorted while encoding (jsonb does not keep key order anyway), which
    also refuses dicts whose keys mix types: `{1: "a", "1": "b"}` would encode
    two identical keys and jsonb would silently keep only one of them.

    Raises:
        TypeError: the value holds something JSON cannot represent (a set, bytes,
            an object), or a dict whose keys mix types.
        InvalidArgument: NaN or infinity, a circular reference, nesting deeper than
            MAX_JSON_DEPTH, a string holding U+0000 or a lone surrogate (jsonb
            stores neither).
        PayloadTooLarge: the encoded value exceeds `max_bytes`.
    """
    if value is None and (max_bytes is None or max_bytes >= 4):
        return "null"  # the result of most handlers: nothing to encode or check
    try:
        text = _ENCODER.encode(value)
    except TypeError as exc:
        if "not supported between instances" in str(exc):
            raise TypeError(
                f"{field} holds a dict whose keys mix types ({exc}); JSON object keys are strings, "
                "so keys such as 1 and '1' would collide"
            ) from exc
        raise TypeError(f"{field} is not JSON serialisable: {exc}") from exc
    except RecursionError as exc:
        raise InvalidArgument(f"{field} is nested too deeply (at most {MAX_JSON_DEPTH} levels)") from exc
    except ValueError as exc:  # NaN/Infinity, circular references
        raise InvalidArgument(f"{field} is not valid JSON: {exc}") from exc
    if _too_deep(text, MAX_JSON_DEPTH):
        raise InvalidArgument(f"{field} is nested too deeply (at most {MAX_JSON_DEPTH} levels)")
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


class UndecodableJSON:
    """Stands in for a stored JSON value Python cannot decode (nested too deeply to parse).

    The client never writes such a value (see MAX_JSON_DEPTH), but a direct SQL
    caller can. Decoding it would raise `RecursionError` in the middle of a
    fetch and lose every row of a claimed batch; instead the value arrives as
    this marker, and the worker fails just that run with a clear reason.
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"<UndecodableJSON: {len(self.text)} characters, nested too deeply for Python>"


def loads(text: str | None) -> Any:
    """Decode a json/jsonb column; a value nested too deeply becomes `UndecodableJSON`."""
    if text is None:
        return None
    if text == "{}":
        return {}  # a claimed run's checkpoints, most of the time: no need for the parser
    try:
        return json.loads(text)
    except RecursionError:
        return UndecodableJSON(text)
