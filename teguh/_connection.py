"""Connection plumbing shared by every client call: DSN, pool, retries, errors, schema.

`ClientBase` owns the pool and runs each call either on the caller's connection
(`conn=`: inside the caller's transaction, never committed here; psycopg2, or
psycopg 3 through `_drivers`) or on a pooled autocommit connection. It maps
database errors to teguh exceptions and retries calls that are safe to repeat
when the connection fails.

How connection failures read: a permanent one (unknown database, role or
host, a wrong or missing password; see `_connect_errors`) raises
`CannotConnect` at once, in one line naming host, port and database. A
transient one is retried quietly (DEBUG per try); a call that then succeeds
logs one WARNING saying how many tries failed, and a call that gives up raises
`ConnectionLost`, whose one line is the summary (tries, seconds, reason).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import psycopg2
import psycopg2.extensions

from . import _backoff, _connect_errors, _drivers, _dsn, _embedded, _json, _sql, _validate
from ._pool import BlockingPool, ConnectFailed
from ._sql import scalar
from ._version import SCHEMA_MAJOR
from ._watchdog import WATCHDOG
from .errors import (
    CannotConnect,
    ConnectionLost,
    InvalidArgument,
    NoDatabaseConfigured,
    PermissionDenied,
    SchemaNotInstalled,
    TeguhError,
    error_message,
    is_connection_lost,
    map_db_error,
    sqlstate,
)

logger = logging.getLogger("teguh.client")

T = TypeVar("T")
C = TypeVar("C", bound="ClientBase")

DEFAULT_CONNECT_TIMEOUT = _dsn.DEFAULT_CONNECT_TIMEOUT

RETRY_ATTEMPTS = 6
"""Tries for a call that is safe to repeat when the connection fails (about 1.5 s of backoff)."""

RETRY_INITIAL_WAIT = 0.05
"""The first backoff between tries, in seconds; it doubles up to RETRY_MAX_WAIT."""

RETRY_MAX_WAIT = 1.0

RETRY_BACKOFF = _backoff.Backoff(RETRY_INITIAL_WAIT, RETRY_MAX_WAIT, jitter=RETRY_INITIAL_WAIT)
"""0.05, 0.1, 0.2, 0.4, 0.8 s between the tries, each plus up to 0.05 s of jitter."""


_PSYCOPG2_CONNECTION = psycopg2.extensions.connection
"""What `conn=` usually is; any other connection (psycopg 3) goes through `_drivers`."""


def schema_sql() -> str:
    """The SQL text that installs or upgrades the teguh schema (for migrations tools)."""
    # imported here: importlib.resources pulls in tempfile, shutil and the
    # compression modules (about 3 ms), which only installing needs
    import importlib.resources

    return importlib.resources.files("teguh").joinpath("schema/teguh.sql").read_text(encoding="utf-8")


def _retry_connect_only(exc: BaseException) -> bool:
    return isinstance(exc, ConnectFailed) and not exc.permanent


def _retry_lost(exc: BaseException) -> bool:
    if isinstance(exc, ConnectFailed):
        return not exc.permanent
    return is_connection_lost(exc)


def _retry_reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectFailed):
        return f"cannot connect: {_connect_errors.reason(exc.cause)}"
    return f"connection lost: {error_message(exc)}"


class ClientBase:
    """The pool and the call runner behind `Client` (see there for the arguments)."""

    max_payload_bytes: int = _json.DEFAULT_MAX_PAYLOAD_BYTES
    """The size limit for params, headers, results, payloads and states (set per instance to change)."""

    call_timeout: float | None = None
    """Seconds a pooled call may wait for the database before its connection is dropped.

    None (the default for clients) waits as long as libpq does; workers set it
    (see `_watchdog`), since a silent network would otherwise block them forever.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        min_connections: int = 1,
        max_connections: int = 10,
        application_name: str = "teguh",
        listen_dsn: str | None = None,
    ) -> None:
        _validate.integer(max_connections, "max_connections", minimum=1)
        _validate.integer(min_connections, "min_connections", minimum=0)
        if min_connections > max_connections:
            raise InvalidArgument("min_connections must not exceed max_connections")
        self._dsn, self._dsn_source = _dsn.configured_dsn(dsn)
        self.application_name = application_name
        self._connect_kwargs: dict[str, Any] = {
            "application_name": application_name,
            **_dsn.network_defaults(self._dsn),
        }
        self._dsn_lock = threading.Lock()
        self._listen_dsn = listen_dsn
        self._pool = BlockingPool(lambda: self.dsn, min_connections, max_connections, **self._connect_kwargs)
        self._schema_checked = False
        self._closed = False
        self.session_hooks: list[Callable[[Any], None]] = []
        """Callables `hook(cursor)` run before every call, on the cursor it uses (pooled or `conn=`).

        For test tools that must reach every session, like `teguh.testing.FakeClock`
        setting `teguh.fake_now`. A worker shares its app client's list.
        """

    def _run_session_hooks(self, cur: Any) -> None:
        for hook in self.session_hooks:
            hook(cur)

    @property
    def dsn(self) -> str:
        """The DSN in use (starting the embedded PostgreSQL if that is the default).

        Raises:
            TeguhError: nothing is configured and the embedded server cannot start.
        """
        with self._dsn_lock:
            if self._dsn is None:
                logger.info(
                    "no database configured (TEGUH_DSN, DATABASE_URL, PGHOST/PGDATABASE unset); "
                    "using the embedded PostgreSQL"
                )
                try:
                    self._dsn = _embedded.embedded_dsn()
                except NoDatabaseConfigured:
                    raise  # its own line already says what to do
                except Exception as exc:  # pgserver raises assorted errors (subprocess, OS, runtime)
                    raise TeguhError(
                        f"no database configured and the embedded PostgreSQL failed to start: {exc}; "
                        "set TEGUH_DSN or pass a DSN"
                    ) from exc
                self._dsn_source = "embedded"
            return self._dsn

    @property
    def listen_dsn(self) -> str:
        """The DSN for LISTEN connections: `listen_dsn=`, else `TEGUH_LISTEN_DSN`, else `dsn`.

        Separate so the pool can go through PgBouncer in transaction pooling
        mode (where LISTEN cannot work) while LISTEN connects directly.
        """
        return self._listen_dsn or os.environ.get(_dsn.LISTEN_DSN_ENV) or self.dsn

    def close(self) -> None:
        """Close the pool's connections; idempotent. Later calls raise `TeguhError`."""
        self._closed = True
        self._pool.close()

    def __enter__(self: C) -> C:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_schema(self, cur: Any) -> None:
        if self._schema_checked:
            return
        try:
            cur.execute(_sql.VERSION)
            row = cur.fetchone()
        except Exception as exc:  # psycopg2's errors, or psycopg 3's on a caller's connection
            code = sqlstate(exc) if _drivers.is_driver_error(exc) else None
            if code == "42501":
                raise PermissionDenied(
                    f"this database role may not use the teguh schema ({error_message(exc)}): "
                    "the schema's owner grants access with teguh.grant_producer/grant_worker/grant_admin",
                    pgcode=code,
                ) from exc
            if code in ("3F000", "42883", "42P01"):
                raise SchemaNotInstalled(
                    "the teguh schema is not installed in this database: run `teguh install`",
                    pgcode=code,
                ) from exc
            raise
        version = str(row[0]) if row else ""
        try:
            major = int(version.split(".")[0])
        except ValueError:
            major = -1
        if major != SCHEMA_MAJOR:
            err = SchemaNotInstalled(
                f"the database has teguh schema version {version!r}, but this client needs "
                f"{SCHEMA_MAJOR}.x: run `teguh install` to upgrade it"
            )
            err.installed_version = version
            err.expected_version = f"{SCHEMA_MAJOR}.x"
            raise err
        self._schema_checked = True

    def _run(
        self,
        what: str,
        fn: Callable[[Any], T],
        *,
        conn: Any = None,
        retry: bool = False,
        check_schema: bool = True,
        queue: str | None = None,
        task_id: Any = None,
        run_id: Any = None,
    ) -> T:
        """Run `fn(cursor)` on the caller's connection or a pooled one, mapping errors."""
        if self._closed:
            raise TeguhError("the client is closed")
        subject = {"queue": queue, "task_id": task_id, "run_id": run_id}
        if conn is not None:
            if not isinstance(conn, _PSYCOPG2_CONNECTION):
                # psycopg 3 (or another DB-API driver): kept off the psycopg2 path,
                # whose only added cost is the type check above
                return self._run_on_foreign(conn, fn, check_schema, subject)
            try:
                with conn.cursor() as cur:
                    self._run_session_hooks(cur)
                    if check_schema:
                        self._check_schema(cur)
                    return fn(cur)
            except psycopg2.Error as exc:
                raise map_db_error(exc, **subject) from exc

        def attempt_once() -> T:
            with (
                self._pool.connection() as pooled,
                WATCHDOG.guard(pooled, self.call_timeout, what),
                pooled.cursor() as cur,
            ):
                self._run_session_hooks(cur)
                if check_schema:
                    self._check_schema(cur)
                return fn(cur)

        retryable = _retry_lost if retry else _retry_connect_only
        failures: list[BaseException] = []

        def on_retry(exc: BaseException, attempt: int, delay: float) -> None:
            # one line per call, not per try: DEBUG here, the summary below or in the error
            failures.append(exc)
            logger.debug("%s: %s; retrying in %.2f s (attempt %d)", what, _retry_reason(exc), delay, attempt)

        started = time.monotonic()
        try:
            result = _backoff.retry(
                attempt_once,
                backoff=RETRY_BACKOFF,
                retry_if=retryable,
                max_attempts=RETRY_ATTEMPTS,
                on_retry=on_retry,
            )
        except ConnectFailed as exc:
            raise self._connect_error(exc, len(failures) + 1, time.monotonic() - started, subject) from (
                exc.cause
            )
        except psycopg2.Error as exc:
            raise map_db_error(exc, **subject) from exc
        if failures:
            logger.warning(
                "%s: succeeded after %d failed attempt(s) over %.1f s (%s)",
                what,
                len(failures),
                time.monotonic() - started,
                _retry_reason(failures[-1]),
            )
        return result

    def _connect_error(
        self, exc: ConnectFailed, attempts: int, seconds: float, subject: dict[str, Any]
    ) -> ConnectionLost:
        """The one-line error for a connection that could not be opened (no password in it)."""
        where = _dsn.describe(self.dsn)
        reason = _connect_errors.reason(exc.cause)
        if exc.permanent:
            return CannotConnect(f"cannot connect to PostgreSQL ({where}): {reason}", **subject)
        tries = f" after {attempts} attempts over {seconds:.1f} s" if attempts > 1 else ""
        return ConnectionLost(f"could not connect to PostgreSQL ({where}){tries}: {reason}", **subject)

    def _run_on_foreign(self, conn: Any, fn: Callable[[Any], T], check_schema: bool, subject: Any) -> T:
        """`_run` on a caller's connection that is not psycopg2's (see `_drivers`)."""
        try:
            with _drivers.cursor(conn) as cur:
                self._run_session_hooks(cur)
                if check_schema:
                    self._check_schema(cur)
                return fn(cur)
        except Exception as exc:
            if not _drivers.is_driver_error(exc):
                raise
            raise map_db_error(exc, **subject) from exc

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """Borrow a pooled connection inside a transaction, for use with `conn=`.

        Commits when the block ends normally, rolls back when it raises. Waits
        while every pooled connection is in use.

        Raises:
            ConnectionLost: no connection could be opened.
        """
        if self._closed:
            raise TeguhError("the client is closed")
        with contextlib.ExitStack() as stack:
            try:
                conn = stack.enter_context(self._pool.connection())
            except ConnectFailed as exc:
                raise self._connect_error(exc, 1, 0.0, {}) from exc.cause
            conn.autocommit = False
            try:
                if self.session_hooks:
                    with conn.cursor() as cur:
                        self._run_session_hooks(cur)
                yield conn
                conn.commit()
            except BaseException:
                if not conn.closed:
                    with contextlib.suppress(psycopg2.Error):
                        conn.rollback()
                raise
            finally:
                if not conn.closed:
                    with contextlib.suppress(psycopg2.Error):
                        conn.rollback()
                        conn.autocommit = True

    def install_schema(self) -> None:
        """Apply the packaged schema in one transaction; idempotent, keeps all data.

        Raises:
            ConnectionLost: the database cannot be reached.
        """
        sql = schema_sql()

        def apply(cur: Any) -> None:
            conn = cur.connection
            conn.autocommit = False
            try:
                cur.execute(sql)
                conn.commit()
            finally:
                if not conn.closed:
                    with contextlib.suppress(psycopg2.Error):
                        conn.rollback()
                        conn.autocommit = True

        self._run("install_schema", apply, retry=True, check_schema=False)
        self._schema_checked = False
        self._run("version", lambda cur: None, retry=True)
        logger.info("teguh schema installed (%s)", _dsn.describe(self.dsn))

    def schema_version(self) -> str:
        """The installed schema's version (`teguh.version()`).

        Raises:
            SchemaNotInstalled: the schema is missing.
        """
        return self._run("version", lambda cur: scalar(cur, _sql.VERSION), retry=True)
