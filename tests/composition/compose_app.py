"""The app of the composition tests, importable and runnable as a worker process.

    python tests/composition/compose_app.py DSN '{"concurrency": 4, "queues": ["jobs", "side"]}'

runs a worker of `build_app(DSN)` in the main thread (SIGTERM stops it).
Handlers write each run to the `ledger` table through their own autocommit
connection, so the test process sees the runs of a process it killed.
Options besides the worker's: `hold_child` and `hold_work` (seconds a
`slow-child` run, and the work step of a `busy-parent`, sleep, so a test can
kill the process mid-run).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import psycopg2

from teguh.app import App

Q = "jobs"
SIDE = "side"

LEDGER_DDL = """
create table if not exists ledger (
    id bigserial primary key,
    task_id text not null,
    what text not null,
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
    """Writes and reads the `ledger` table (one short autocommit connection per call)."""

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

    def record(self, task_id: str, what: str) -> None:
        self._query("insert into ledger (task_id, what) values (%s, %s)", (task_id, what))

    def count(self, what: str, task_id: str | None = None) -> int:
        if task_id is None:
            return self._query("select count(*) from ledger where what = %s", (what,))[0][0]
        query = "select count(*) from ledger where what = %s and task_id = %s"
        return self._query(query, (what, task_id))[0][0]


def build_app(dsn: str, hold_child: float = 0.0, hold_work: float = 0.0) -> App:
    app = App(dsn, queue=Q)
    ledger = Ledger(dsn)

    @app.task("square")
    def square(params: Any, ctx: Any) -> Any:
        return params * params

    @app.task("slow-child", queue=Q)
    def slow_child(params: Any, ctx: Any) -> Any:
        ledger.record(ctx.task_id, f"slow-child-start:{params}")
        time.sleep(hold_child)
        ledger.record(ctx.task_id, f"slow-child-done:{params}")
        return params * 10

    @app.task("noop")
    def noop(params: Any) -> Any:
        return params

    @app.task("fan-out")
    def fan_out(params: Any, ctx: Any) -> Any:
        ledger.record(ctx.task_id, "fan-out-run")
        results = ctx.map("children", params["child"], list(range(params["n"])), queue=params.get("queue"))
        ledger.record(ctx.task_id, "fan-out-gathered")
        return results

    @app.task("busy-parent")
    def busy_parent(params: Any, ctx: Any) -> Any:
        # spawns its children, then works while they run (a kill lands here)
        ledger.record(ctx.task_id, "busy-parent-run")
        kids = [ctx.spawn_task(params["child"], i, queue=params.get("queue")) for i in range(params["n"])]
        ctx.step("work", _work, ledger, ctx.task_id, hold_work)
        return ctx.gather(kids)

    return app


def _work(ledger: Ledger, task_id: str, hold: float) -> bool:
    ledger.record(task_id, "work-start")
    time.sleep(hold)
    return True


def main() -> None:
    dsn = sys.argv[1]
    options = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    app = build_app(dsn, hold_child=options.pop("hold_child", 0.0), hold_work=options.pop("hold_work", 0.0))
    queues = options.pop("queues", None)
    worker = app.worker(queues=queues, **options) if queues else app.worker(**options)
    worker.run()


if __name__ == "__main__":
    main()
