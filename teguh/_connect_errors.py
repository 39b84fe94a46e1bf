"""Which failures to open a connection can heal, and the one-line reason to show for them.

A wrong database name, role, password or host fails the same way on every
try: retrying only delays the message and buries it under warnings. A server
that is down, starting up, shutting down or out of connection slots, or a
network timeout, may heal within the client's retry budget.

libpq reports connection failures as text: psycopg2's `OperationalError` from
`connect` carries no SQLSTATE (its `pgcode` is None) even when the server sent
one with its FATAL message. So the SQLSTATE decides when there is one, and
otherwise libpq's (English) message does. Anything not recognised counts as
transient: retrying a permanent error costs about 1.5 s, giving up on one that
would have healed costs a failed call. A server whose `lc_messages` is not
English sends translated FATAL messages, which are therefore retried (and
reported, as before, once the retries are used up).
"""

from __future__ import annotations

import re

import psycopg2

PERMANENT_SQLSTATES = frozenset({"3D000", "28000", "28P01", "42501", "08P01"})
"""invalid_catalog_name, invalid_authorization_specification, invalid_password,
insufficient_privilege (no CONNECT privilege), protocol_violation."""

TRANSIENT_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300", "53400"})
"""admin and crash shutdown, cannot_connect_now (starting up), too_many_connections,
configuration_limit_exceeded."""

TRANSIENT_MESSAGES = (
    "temporary failure in name resolution",  # DNS not answering (yet), e.g. a container starting
    "the database system is",  # ... starting up / shutting down / in recovery mode
    "too many clients",
    "too many connections",
    "remaining connection slots are reserved",
)
"""Checked first: these heal although they contain a permanent message's words."""

PERMANENT_MESSAGES = (
    # the database or the role
    "does not exist",
    "is not permitted to log in",
    "permission denied for database",
    # authentication (password, peer, ident, ...) and pg_hba.conf
    "authentication failed",
    "no password supplied",
    "no pg_hba.conf entry",
    "password is required",
    # the host name
    "could not translate host name",
    "name or service not known",
    "nodename nor servname provided",
    "no address associated with hostname",
    # TLS and connection settings
    "ssl was required",
    "server does not support ssl",
    "certificate",
    "invalid sslmode",
    "invalid connection option",
    "invalid port number",
    "invalid integer value",
    "invalid dsn",
    "unsupported frontend protocol",
)

_PREFIX = re.compile(r'^connection to server (?:at "[^"]*", port \S+|on socket "[^"]*") failed:\s*')
_SEVERITY = re.compile(r"^(?:FATAL|ERROR):\s+")


def is_permanent(exc: BaseException) -> bool:
    """Whether opening a connection failed in a way no retry can fix (see the module docs)."""
    if not isinstance(exc, psycopg2.Error):
        return False
    if not isinstance(exc, psycopg2.OperationalError):
        return True  # ProgrammingError: an unparsable DSN
    code = getattr(exc, "pgcode", None)
    if code:
        if code in PERMANENT_SQLSTATES:
            return True
        if code in TRANSIENT_SQLSTATES or code.startswith("08"):
            return False
    text = str(exc).lower()
    if any(marker in text for marker in TRANSIENT_MESSAGES):
        return False
    return any(marker in text for marker in PERMANENT_MESSAGES)


def reason(exc: BaseException) -> str:
    """libpq's message in one line, without the "connection to server ... failed:" and "FATAL:" prefixes.

    The caller names the host, port and database itself (`_dsn.describe`);
    libpq's hint lines ("Is the server running ...?") are dropped.
    """
    for line in str(exc).splitlines():
        text = _SEVERITY.sub("", _PREFIX.sub("", line.strip()))
        if text:
            return " ".join(text.split())
    return type(exc).__name__
