"""A blocking, self-healing wrapper around psycopg2's ThreadedConnectionPool.

psycopg2's pool raises `PoolError` when every connection is in use; this wrapper
makes callers wait instead (a semaphore sized like the pool). Connections found
broken are closed rather than returned, and since a lost connection usually means
the server restarted, every connection opened before it is retired as well.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

import psycopg2
import psycopg2.extras
import psycopg2.pool

from . import _connect_errors, _json
from .errors import TeguhError, is_connection_lost

logger = logging.getLogger("teguh.client")


class ConnectFailed(Exception):
    """Internal: opening a connection failed, so nothing was sent and a retry is safe.

    `permanent` tells whether a retry could help at all (a wrong database,
    role, password or host: see `_connect_errors`).
    """

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.permanent = _connect_errors.is_permanent(cause)


class BlockingPool:
    """Hands out autocommit connections, waiting when all `max_connections` are busy.

    The underlying pool is created on first use, so constructing a client never
    touches the network.
    """

    def __init__(self, dsn_factory: Any, min_connections: int, max_connections: int, **connect_kwargs: Any):
        self._dsn_factory = dsn_factory
        self._min = min_connections
        self._max = max_connections
        self._kwargs = connect_kwargs
        self._slots = threading.BoundedSemaphore(max_connections)
        self._lock = threading.Lock()
        self._pool: psycopg2.pool.ThreadedConnectionPool | None = None
        self._generation = 0
        self._born: dict[int, int] = {}
        self._closed = False

    def _get_pool(self) -> psycopg2.pool.ThreadedConnectionPool:
        with self._lock:
            if self._closed:
                raise TeguhError("the client is closed")
            if self._pool is None:
                try:
                    self._pool = psycopg2.pool.ThreadedConnectionPool(
                        self._min, self._max, self._dsn_factory(), **self._kwargs
                    )
                except psycopg2.Error as exc:
                    raise ConnectFailed(exc) from exc
                # psycopg2 keeps at most `minconn` idle connections and closes the
                # rest on return; keep them all, or busy clients reconnect per call.
                self._pool.minconn = self._max
            return self._pool

    def _take(self) -> tuple[psycopg2.pool.ThreadedConnectionPool, Any]:
        pool = self._get_pool()
        while True:
            try:
                conn = pool.getconn()
            except psycopg2.pool.PoolError as exc:
                raise TeguhError(f"connection pool error: {exc}") from exc
            except psycopg2.Error as exc:
                raise ConnectFailed(exc) from exc
            with self._lock:
                fresh = id(conn) not in self._born
                born = self._born.setdefault(id(conn), self._generation)
                stale = born < self._generation
            if fresh and not conn.closed:
                # JSON too deep for Python must not break a whole fetch (see _json.loads)
                psycopg2.extras.register_default_json(conn, loads=_json.loads)
                psycopg2.extras.register_default_jsonb(conn, loads=_json.loads)
            if conn.closed or stale:
                self._discard(pool, conn)
                continue
            if not conn.autocommit:
                conn.autocommit = True
            return pool, conn

    def _discard(self, pool: psycopg2.pool.ThreadedConnectionPool, conn: Any) -> None:
        with self._lock:
            self._born.pop(id(conn), None)
        try:
            pool.putconn(conn, close=True)
        except psycopg2.pool.PoolError:  # the pool was closed meanwhile
            conn.close()

    def _give_back(self, pool: psycopg2.pool.ThreadedConnectionPool, conn: Any, broken: bool) -> None:
        if broken or conn.closed:
            if broken:
                self.drain()
                logger.warning("discarding a broken database connection (and older pooled ones)")
            self._discard(pool, conn)
            return
        try:
            pool.putconn(conn)
        except psycopg2.pool.PoolError:
            conn.close()
        if conn.closed:
            with self._lock:
                self._born.pop(id(conn), None)

    def drain(self) -> None:
        """Retire every connection opened so far: each is closed instead of handed out or kept.

        Idle connections are replaced at their next checkout, busy ones when
        they are returned. For session state that must not outlive its
        purpose (a fake clock's setting) and for a server that restarted.
        """
        with self._lock:
            self._generation += 1

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        """Borrow an autocommit connection; blocks while every connection is in use.

        Raises:
            ConnectFailed: a new connection could not be opened.
            TeguhError: the pool is closed.
        """
        self._slots.acquire()
        try:
            pool, conn = self._take()
            broken = False
            try:
                yield conn
            except BaseException as exc:
                broken = is_connection_lost(exc) or bool(conn.closed)
                raise
            finally:
                self._give_back(pool, conn, broken)
        finally:
            self._slots.release()

    def close(self) -> None:
        """Close every idle connection; connections in use are closed when returned."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.closeall()
