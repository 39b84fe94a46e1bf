"""Where to connect when the caller does not say.

Order: an explicit DSN, then `TEGUH_DSN`, then `DATABASE_URL`, then libpq's own
`PG*` variables (when `PGHOST` or `PGDATABASE` is set: the DSN is "" and libpq
reads them), and last the embedded PostgreSQL (see `teguh dev`).
"""

from __future__ import annotations

import os

import psycopg2.extensions

from .errors import InvalidArgument

ENV_VARS = ("TEGUH_DSN", "DATABASE_URL")
"""Environment variables holding a DSN, in order of precedence."""


def configured_dsn(dsn: str | None = None) -> tuple[str | None, str]:
    """The DSN to use and where it came from; (None, "embedded") when nothing is configured."""
    if dsn is not None:
        return dsn, "argument"
    for var in ENV_VARS:
        value = os.environ.get(var)
        if value:
            return value, var
    if os.environ.get("PGHOST") or os.environ.get("PGDATABASE"):
        return "", "PG* environment variables"
    return None, "embedded"


def parse(dsn: str) -> dict[str, str]:
    """The DSN's parameters (a URI or key=value string).

    Raises:
        InvalidArgument: the DSN cannot be parsed.
    """
    if not dsn:
        return {}
    try:
        return psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError as exc:
        raise InvalidArgument(f"invalid DSN: {str(exc).strip()}") from None


def describe(dsn: str) -> str:
    """A short, password-free description of where a DSN points, for messages."""
    try:
        info = parse(dsn)
    except InvalidArgument:
        return "an unparsable DSN"
    host = info.get("host") or os.environ.get("PGHOST") or "local socket"
    port = info.get("port") or os.environ.get("PGPORT") or "5432"
    dbname = info.get("dbname") or os.environ.get("PGDATABASE") or "(default database)"
    return f"host={host} port={port} dbname={dbname}"
