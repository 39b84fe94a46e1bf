"""A caller's psycopg 3 connection, made to answer like teguh's own psycopg2 ones.

teguh's pool is psycopg2, but a caller may hand `conn=` a psycopg 3 connection:
SQLAlchemy 2.1 maps `postgresql://` to psycopg 3, and Django prefers it when
it is installed. The statements in `_sql` run unchanged on it (both drivers
take `%s` placeholders, and every statement casts its JSON, uuid and array
parameters). What differs is what comes back: psycopg 3 loads uuid columns as
`uuid.UUID` and JSON with the plain `json.loads`. `cursor()` gives a cursor
whose loaders return what psycopg2 returns on teguh's pool (uuids as `str`,
JSON through `_json.loads`), changing nothing on the caller's connection.

psycopg 3 is never imported here: it is looked up in `sys.modules`, since a
psycopg 3 connection or error can only exist once the module is loaded. So
teguh needs psycopg 3 neither installed nor imported unless the caller uses it.
Its errors reach the caller's `_run`, which maps them like psycopg2's.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Iterator
from typing import Any

from . import _json


def is_psycopg3_connection(obj: Any) -> bool:
    """Whether `obj` is a (synchronous) psycopg 3 connection."""
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(obj, psycopg.Connection)


def is_driver_error(exc: BaseException) -> bool:
    """Whether `exc` is a database error of psycopg2 or psycopg 3."""
    import psycopg2

    if isinstance(exc, psycopg2.Error):
        return True
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(exc, psycopg.Error)


@functools.cache
def _loaders() -> tuple[type, type]:
    """The text-format loaders of the adapted cursor (built once psycopg 3 is in use)."""
    from psycopg.adapt import Loader

    class StrLoader(Loader):
        """A uuid as psycopg2 returns it: its text."""

        def load(self, data: Any) -> str:
            return bytes(data).decode("ascii")

    class JsonLoader(Loader):
        """json/jsonb through `_json.loads`, which keeps a value nested too deeply as a marker."""

        def load(self, data: Any) -> Any:
            return _json.loads(bytes(data).decode("utf-8"))

    return StrLoader, JsonLoader


@contextlib.contextmanager
def cursor(conn: Any) -> Iterator[Any]:
    """A cursor of the caller's connection, closed at the end.

    For a psycopg 3 connection, the cursor's own adapters (a copy the cursor
    makes on write) load uuid as `str` and JSON with `_json.loads`; any other
    DB-API connection gives its plain cursor.
    """
    with conn.cursor() as cur:
        if is_psycopg3_connection(conn):
            str_loader, json_loader = _loaders()
            adapters = cur.adapters
            adapters.register_loader("uuid", str_loader)
            adapters.register_loader("json", json_loader)
            adapters.register_loader("jsonb", json_loader)
        yield cur
