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

LISTEN_DSN_ENV = "TEGUH_LISTEN_DSN"
"""The environment variable naming a direct (non-pooled) DSN for LISTEN connections."""


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


DEFAULT_CONNECT_TIMEOUT = 10
"""Seconds libpq waits for a connection, unless the DSN or PGCONNECT_TIMEOUT says otherwise."""

TCP_OPTIONS = {
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "30000",
}
"""libpq TCP settings so a dead peer or a partition is noticed in about 25-30 s.

Keepalives probe an idle connection (a call waiting for its answer counts as
idle once its bytes were acknowledged); `tcp_user_timeout` (ms) bounds how long
sent bytes may stay unacknowledged, which otherwise retransmits for ~15 min.
Unix sockets ignore them.
"""


def network_defaults(dsn: str | None) -> dict[str, str]:
    """`connect_timeout` and TCP keepalive settings for `psycopg2.connect`, minus what the DSN sets."""
    info = parse(dsn) if dsn else {}
    defaults: dict[str, str] = {}
    if "connect_timeout" not in info and not os.environ.get("PGCONNECT_TIMEOUT"):
        defaults["connect_timeout"] = str(DEFAULT_CONNECT_TIMEOUT)
    for key, val in TCP_OPTIONS.items():
        # tcp_user_timeout needs libpq 12; an older one rejects the keyword
        if key == "tcp_user_timeout" and psycopg2.extensions.libpq_version() < 120000:
            continue
        if key not in info:
            defaults[key] = val
    return defaults


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


def location(dsn: str) -> tuple[str, str, str] | None:
    """`(host, port, dbname)` a DSN points at, libpq's `PG*` variables filling gaps; None if unparsable.

    Never the user or password. An unset host reads "local socket" (libpq's
    default socket directory), an unset database "(default database)".
    """
    try:
        info = parse(dsn)
    except InvalidArgument:
        return None
    host = info.get("host") or os.environ.get("PGHOST") or "local socket"
    port = info.get("port") or os.environ.get("PGPORT") or "5432"
    dbname = info.get("dbname") or os.environ.get("PGDATABASE") or "(default database)"
    return host, port, dbname


def describe(dsn: str) -> str:
    """A short, password-free description of where a DSN points, for messages."""
    where = location(dsn)
    if where is None:
        return "an unparsable DSN"
    host, port, dbname = where
    return f"host={host} port={port} dbname={dbname}"


def short(dsn: str) -> str:
    """Where a DSN points, as `db NAME at HOST:PORT` (no user, no password), for log lines."""
    where = location(dsn)
    if where is None:
        return "an unparsable DSN"
    host, port, dbname = where
    return f"db {dbname} at {host}:{port}"
