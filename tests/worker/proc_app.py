"""A small teguh app for the worker tests, importable and runnable as a worker process.

    python tests/worker/proc_app.py DSN '{"claim_timeout": 2, "concurrency": 1}'

runs a worker of `build_app(DSN)` on queue `Q` in the main thread (so SIGTERM and
SIGINT stop it gracefully) and exits 0 when `Worker.run()` returns.

Handlers record what they do in a `ledger` table through their own autocommit
connection, so the test process can see executions of a process it killed.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from typing import Any

import psycopg2

from teguh.app import App

Q = "jobs"

LEDGER_DDL = """
create table if not exists ledger (
    id bigserial primary key,
    task_id text not null,
    what text not null,
    attempt int not null,
    pid int not null default pg_backend_pid(),
    at timestamptz not null default clock_timestamp()
)
"""


def create_ledger(dsn: str) -> None:
    conn = psycopg2.connect(dsn)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(LEDGER_DDL)
    finally:
        conn.close()


class Ledger:
    """Writes and reads the `ledger` table, one short-lived autocommit connection per call."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def _query(self, query: str, args: tuple) -> list[tuple]:
        conn = psycopg2.connect(self.dsn)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(query, args)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def record(self, task_id: str, what: str, attempt: int) -> int:
        (row,) = self._query(
            "insert into ledger (task_id, what, attempt) values (%s, %s, %s) returning id",
            (task_id, what, attempt),
        )
        return row[0]

    def entries(self, task_id: str | None = None) -> list[tuple[str, int]]:
        """`(what, attempt)` in the order they were written."""
        if task_id is None:
            return self._query("select what, attempt from ledger order by id", ())
        return self._query("select what, attempt from ledger where task_id = %s order by id", (task_id,))

    def count(self, task_id: str, what: str) -> int:
        return len([e for e in self.entries(task_id) if e[0] == what])


def build_app(dsn: str, version: str | None = None, typed_max_attempts: int = 4) -> App:
    """The app both the subprocess and the test's own workers run.

    `version` and `typed_max_attempts` let two processes look like two
    releases of the app (task types: last writer wins).
    """
    app = App(dsn, queue=Q, version=version)
    ledger = Ledger(dsn)

    @app.task("typed", max_attempts=typed_max_attempts, priority=2)
    def typed(params: Any, ctx: Any) -> Any:
        ledger.record(ctx.task_id, "typed", ctx.attempt)
        return {"attempt": ctx.attempt}

    @app.task("crashy", retry_strategy={"kind": "fixed", "base_seconds": 0})
    def crashy(params: Any, ctx: Any) -> Any:
        # step A commits, then the first attempt blocks until its process is killed
        ctx.step("A", ledger.record, ctx.task_id, "A", ctx.attempt)
        if ctx.attempt == 1:
            ledger.record(ctx.task_id, "blocked", ctx.attempt)
            threading.Event().wait()  # forever: the test kills this process
        ledger.record(ctx.task_id, "finished", ctx.attempt)
        return {"finished_on_attempt": ctx.attempt}

    @app.task("slow")
    def slow(params: Any, ctx: Any) -> Any:
        # {"seconds": s}: block s seconds; with "first_run_only", later runs do not block
        params = params or {}
        seconds = params.get("seconds", 1.0)
        if params.get("first_run_only") and ledger.count(ctx.task_id, "started"):
            seconds = 0
        ledger.record(ctx.task_id, "started", ctx.attempt)
        threading.Event().wait(seconds)
        ledger.record(ctx.task_id, "finished", ctx.attempt)
        return {"slept": seconds}

    return app


def main(argv: list[str]) -> int:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(threadName)s %(name)s: %(message)s"
    )
    dsn = argv[1]
    options = json.loads(argv[2]) if len(argv) > 2 else {}
    app = build_app(
        dsn, options.pop("app_version", None), typed_max_attempts=options.pop("typed_max_attempts", 4)
    )
    worker = app.worker(**options)
    try:
        worker.run()
    finally:
        worker.client.close()
        app.client.close()
    log = logging.getLogger("proc_app")
    if worker.stuck_handlers:
        # As `teguh worker` does: Python cannot stop a thread, and the pool's
        # threads would be joined at interpreter exit.
        log.info("worker process exiting now, %d handler(s) still running", worker.stuck_handlers)
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)
    log.info("worker process exiting normally")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
