"""Shared helpers for the SQL-level engine tests.

Every test talks to the plpgsql engine directly through psycopg2. Time is
pinned with `teguh.fake_now` (per connection) wherever possible: `BASE` is
the fixed start of every test, `ts(seconds)` a moment relative to it.
"""

from __future__ import annotations

import contextlib
import json
import select
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg2
import psycopg2.extensions
import pytest
from _support.polling import eventually

BASE = datetime(2024, 4, 1, 10, 0, tzinfo=timezone.utc)
Q = "jobs"

RUN_SCOPED = (
    "complete_run",
    "fail_run",
    "schedule_run",
    "sleep_run",
    "set_task_checkpoint_state",
    "extend_claim",
    "await_event",
    "get_task_checkpoint_states",
)


def ts(seconds: float = 0.0) -> datetime:
    """A moment `seconds` after BASE."""
    return BASE + timedelta(seconds=seconds)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"not JSON serialisable: {value!r}")


def j(value: Any) -> str:
    return json.dumps(value, default=_json_default)


def uid(value: Any) -> str:
    return str(value)


@contextlib.contextmanager
def sqlstate(code: str) -> Iterator[Any]:
    """Expect a psycopg2 error with exactly this SQLSTATE."""
    with pytest.raises(psycopg2.Error) as info:
        yield info
    got = info.value.pgcode
    assert got == code, f"expected SQLSTATE {code}, got {got}: {info.value}"


class Cases:
    """Checks many cases in one test (one database), reporting every failure.

    with cases.case("label"):
        ...assertions...
    cases.verify()
    """

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.count = 0

    @contextlib.contextmanager
    def case(self, label: str) -> Iterator[None]:
        self.count += 1
        try:
            yield
        except (AssertionError, pytest.fail.Exception, psycopg2.Error) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            self.failures.append(f"{label}: {type(exc).__name__}: {first}")

    def verify(self) -> None:
        assert self.count > 0, "no case was checked"
        assert not self.failures, f"{len(self.failures)} of {self.count} cases failed:\n" + "\n".join(
            self.failures
        )


class Engine:
    """Calls the engine's functions for one queue on one connection."""

    def __init__(self, sql: Any, queue: str = Q) -> None:
        self.sql = sql
        self.q = queue

    # -- clock -------------------------------------------------------------
    def at(self, seconds: float) -> datetime:
        when = ts(seconds)
        self.sql.fake_now(when)
        return when

    def now(self) -> datetime:
        return self.sql.value("select teguh.current_time()")

    # -- tables ------------------------------------------------------------
    def table(self, prefix: str) -> str:
        return f'teguh."{prefix}_{self.q}"'

    def rows(self, prefix: str, where: str = "true", *args: Any) -> list[dict]:
        return self.sql.dicts(f"select * from {self.table(prefix)} where {where}", *args)

    def count(self, prefix: str, where: str = "true", *args: Any) -> int:
        return self.sql.value(f"select count(*) from {self.table(prefix)} where {where}", *args)

    def task(self, task_id: Any) -> dict:
        rows = self.rows("t", "task_id = %s", uid(task_id))
        assert len(rows) == 1, f"task {task_id}: {rows}"
        return rows[0]

    def pending_row(self, task_id: Any) -> dict | None:
        rows = self.rows("p", "task_id = %s", uid(task_id))
        return rows[0] if rows else None

    def lease(self, run_id: Any) -> dict | None:
        rows = self.rows("r", "run_id = %s", uid(run_id))
        return rows[0] if rows else None

    def leases_of(self, task_id: Any) -> list[dict]:
        return self.rows("r", "task_id = %s", uid(task_id))

    def waits_of(self, task_id: Any) -> list[dict]:
        return self.rows("w", "task_id = %s", uid(task_id))

    def checkpoint_row(self, task_id: Any, name: str) -> dict | None:
        rows = self.rows("c", "task_id = %s and checkpoint_name = %s", uid(task_id), name)
        return rows[0] if rows else None

    # -- functions ---------------------------------------------------------
    def create(self) -> None:
        self.sql.run("select teguh.create_queue(%s)", self.q)

    def spawn(self, task_name: str = "task", params: Any = None, **options: Any) -> dict:
        rows = self.sql.dicts(
            "select * from teguh.spawn_task(%s, %s, %s::jsonb, %s::jsonb)",
            self.q,
            task_name,
            j({} if params is None else params),
            j(options),
        )
        assert len(rows) == 1, rows
        return rows[0]

    def spawn_many(self, items: list[dict]) -> list[dict]:
        return self.sql.dicts("select * from teguh.spawn_tasks(%s, %s::jsonb)", self.q, j(items))

    def claim(self, worker: str = "worker-1", timeout: int = 60, qty: int = 1) -> list[dict]:
        return self.sql.dicts("select * from teguh.claim_task(%s, %s, %s, %s)", self.q, worker, timeout, qty)

    def claim_one(self, worker: str = "worker-1", timeout: int = 60) -> dict:
        rows = self.claim(worker, timeout, 1)
        assert len(rows) == 1, f"expected one claimed run, got {rows}"
        return rows[0]

    def start(self, task_name: str = "task", params: Any = None, timeout: int = 60, **options: Any):
        """Spawn a task and claim it: returns (task_id, run_id)."""
        task = self.spawn(task_name, params, **options)
        run = self.claim_one(timeout=timeout)
        assert run["task_id"] == task["task_id"]
        return task["task_id"], run["run_id"]

    def complete(self, run_id: Any, result: Any = None) -> None:
        self.sql.run(
            "select teguh.complete_run(%s, %s, %s::jsonb)",
            self.q,
            uid(run_id),
            None if result is None else j(result),
        )

    def fail(self, run_id: Any, reason: Any = None, retry_at: datetime | None = None) -> None:
        if reason is None:
            reason = {"type": "Boom", "message": "it failed"}
        self.sql.run("select teguh.fail_run(%s, %s, %s::jsonb, %s)", self.q, uid(run_id), j(reason), retry_at)

    def schedule(self, run_id: Any, wake_at: datetime) -> None:
        self.sql.run("select teguh.schedule_run(%s, %s, %s)", self.q, uid(run_id), wake_at)

    def sleep(
        self, run_id: Any, step: str, duration: float | None = None, wake_at: datetime | None = None
    ) -> dict:
        # The wake-time column is read by position: PostgreSQL cannot name a
        # result column like the `wake_at` argument (the engine calls it resume_at).
        rows = self.sql.all(
            "select * from teguh.sleep_run(%s, %s, %s, %s, %s)",
            self.q,
            uid(run_id),
            step,
            duration,
            wake_at,
        )
        assert len(rows) == 1 and len(rows[0]) == 2, rows
        return {"should_suspend": rows[0][0], "wake_at": rows[0][1]}

    def checkpoint(
        self, task_id: Any, step: str, state: Any, run_id: Any, extend_by: int | None = None
    ) -> None:
        self.sql.run(
            "select teguh.set_task_checkpoint_state(%s, %s, %s, %s::jsonb, %s, %s)",
            self.q,
            uid(task_id),
            step,
            j(state),
            uid(run_id),
            extend_by,
        )

    def get_checkpoint(self, task_id: Any, step: str) -> dict | None:
        rows = self.sql.dicts(
            "select * from teguh.get_task_checkpoint_state(%s, %s, %s)", self.q, uid(task_id), step
        )
        assert len(rows) <= 1, rows
        return rows[0] if rows else None

    def checkpoints(self, task_id: Any, run_id: Any) -> dict[str, tuple[Any, str]]:
        rows = self.sql.all(
            "select checkpoint_name, state, status from teguh.get_task_checkpoint_states(%s, %s, %s)",
            self.q,
            uid(task_id),
            uid(run_id),
        )
        names = [r[0] for r in rows]
        assert len(names) == len(set(names)), f"duplicate checkpoint names: {names}"
        return {r[0]: (r[1], r[2]) for r in rows}

    def await_event(
        self, task_id: Any, run_id: Any, step: str, event: str, timeout: int | None = None
    ) -> dict:
        rows = self.sql.dicts(
            "select should_suspend, payload, timed_out, payload is null as payload_sql_null"
            " from teguh.await_event(%s, %s, %s, %s, %s, %s)",
            self.q,
            uid(task_id),
            uid(run_id),
            step,
            event,
            timeout,
        )
        assert len(rows) == 1, rows
        return rows[0]

    def emit(self, event: str, payload: Any = None) -> None:
        """Emit with a JSON payload (None is sent as JSON null)."""
        self.sql.run("select teguh.emit_event(%s, %s, %s::jsonb)", self.q, event, j(payload))

    def emit_sql_null(self, event: str) -> None:
        """Emit using the default (SQL NULL) payload."""
        self.sql.run("select teguh.emit_event(%s, %s)", self.q, event)

    def cancel(self, task_id: Any) -> None:
        self.sql.run("select teguh.cancel_task(%s, %s)", self.q, uid(task_id))

    def retry(self, task_id: Any, **options: Any) -> dict:
        rows = self.sql.dicts(
            "select * from teguh.retry_task(%s, %s, %s::jsonb)", self.q, uid(task_id), j(options)
        )
        assert len(rows) == 1, rows
        return rows[0]

    def extend(self, run_id: Any, extend_by: int | None) -> None:
        self.sql.run("select teguh.extend_claim(%s, %s, %s)", self.q, uid(run_id), extend_by)

    def extend_many(self, run_ids: list[Any], extend_by: int) -> dict[Any, str]:
        rows = self.sql.all(
            "select run_id, outcome from teguh.extend_claims(%s, %s::uuid[], %s)",
            self.q,
            [uid(r) for r in run_ids],
            extend_by,
        )
        return {r[0]: r[1] for r in rows}

    def result(self, task_id: Any) -> dict:
        rows = self.sql.dicts("select * from teguh.get_task_result(%s, %s)", self.q, uid(task_id))
        assert len(rows) == 1, rows
        return rows[0]

    def state(self, task_id: Any) -> str:
        return self.result(task_id)["state"]

    def next_due(self) -> datetime | None:
        return self.sql.value("select teguh.next_due(%s)", self.q)

    def ticker(self, this_queue_only: bool = True) -> int:
        if this_queue_only:
            return self.sql.value("select teguh.ticker(%s)", self.q)
        return self.sql.value("select teguh.ticker()")

    def cleanup(self, ttl: int | None = None, limit: int | None = None) -> int:
        return self.sql.value("select teguh.cleanup_tasks(%s, %s, %s)", self.q, ttl, limit)


@pytest.fixture
def eng(db: Any) -> Engine:
    """Queue `jobs` created, clock pinned at BASE."""
    db.fake_now(BASE)
    e = Engine(db, Q)
    e.create()
    return e


@pytest.fixture
def engine_factory(sql_factory: Any, eng: Engine) -> Callable[..., Engine]:
    """More connections on the same queue; each gets the clock pinned at `at`."""

    def make(at: float | None = 0.0, queue: str = Q) -> Engine:
        sql = sql_factory()
        if at is not None:
            sql.fake_now(ts(at))
        return Engine(sql, queue)

    return make


# -- "nothing written" -------------------------------------------------------
def snapshot(sql: Any) -> dict[str, Any]:
    """Every user relation's name and every user table's full contents (hashed)."""
    rels = sql.all(
        "select n.nspname, c.relname, c.relkind from pg_class c"
        " join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname not in ('pg_catalog', 'information_schema')"
        " and n.nspname not like 'pg_toast%%' and n.nspname not like 'pg_temp%%'"
        " order by 1, 2"
    )
    contents = {}
    for nsp, rel, kind in rels:
        if kind in ("r", "p"):
            name = f'"{nsp}"."{rel}"'
            contents[name] = sql.value(
                "select count(*)::text || ':'"
                " || coalesce(md5(string_agg(x::text, ',' order by x::text)), '')"
                f" from {name} x"
            )
    return {"relations": rels, "contents": contents}


# -- notifications -----------------------------------------------------------
class Listener:
    """A LISTEN connection; `collect()` returns what arrived up to a barrier."""

    BARRIER = "teguh_test_barrier"

    def __init__(self, dsn: str, *channels: str) -> None:
        self.conn = psycopg2.connect(dsn)
        self.conn.autocommit = True
        with self.conn.cursor() as cur:
            for ch in (*channels, self.BARRIER):
                cur.execute(f'listen "{ch}"')
        self.pending: list[tuple[str, str]] = []

    def close(self) -> None:
        self.conn.close()

    def _pump(self, timeout: float) -> None:
        if select.select([self.conn], [], [], timeout)[0]:
            self.conn.poll()
        else:
            self.conn.poll()
        while self.conn.notifies:
            n = self.conn.notifies.pop(0)
            self.pending.append((n.channel, n.payload))

    def collect(self, sender: Any, timeout: float = 10.0) -> list[tuple[str, str]]:
        """All notifications committed before now (by any session), in order.

        `sender` (an Sql) sends a barrier notification after everything the
        test did; notifications arrive in commit order, so when the barrier
        arrives, everything committed before it has arrived too.
        """
        token = uuid.uuid4().hex
        sender.run("select pg_notify(%s, %s)", self.BARRIER, token)
        deadline = time.monotonic() + timeout
        while True:
            for i, (ch, payload) in enumerate(self.pending):
                if ch == self.BARRIER and payload == token:
                    got = [n for n in self.pending[:i] if n[0] != self.BARRIER]
                    self.pending = self.pending[i + 1 :]
                    return got
            left = deadline - time.monotonic()
            assert left > 0, f"barrier notification never arrived; got {self.pending}"
            self._pump(min(left, 0.5))


@pytest.fixture
def listener_factory(dsn: str) -> Iterator[Callable[..., Listener]]:
    made: list[Listener] = []

    def make(*channels: str) -> Listener:
        lst = Listener(dsn, *channels)
        made.append(lst)
        return lst

    yield make
    for lst in made:
        lst.close()


# -- threads and locks -------------------------------------------------------
class Bg(threading.Thread):
    """Runs fn(*args) in a daemon thread, keeping its result or exception."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        super().__init__(daemon=True)
        self.fn = fn
        self.args = args
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn(*self.args)
        except BaseException as exc:
            self.error = exc


def bg(fn: Callable[..., Any], *args: Any) -> Bg:
    t = Bg(fn, *args)
    t.start()
    return t


def join_all(threads: list[Bg], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    alive = [t for t in threads if t.is_alive()]
    assert not alive, f"{len(alive)} thread(s) still running after {timeout}s (deadlock?)"


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """`_support.polling.eventually`, polling every 5 ms (lock waits show up fast)."""
    return eventually(predicate, timeout, 0.005, what)


def wait_blocked(observer: Any, pid: int, timeout: float = 10.0) -> None:
    """Wait until backend `pid` waits on a heavyweight lock."""

    def blocked() -> bool:
        return observer.value("select wait_event_type from pg_stat_activity where pid = %s", pid) == "Lock"

    wait_until(blocked, timeout, f"backend {pid} to block on a lock")


def pid_of(sql: Any) -> int:
    return sql.conn.get_backend_pid()


# Test modules import these helpers as `from teguh_engine_helpers import ...`:
# a stable name that works whatever pytest import mode is configured (both
# tests/conftest.py and this file would otherwise be plain "conftest").
import sys as _sys  # noqa: E402

_sys.modules.setdefault("teguh_engine_helpers", _sys.modules[__name__])
