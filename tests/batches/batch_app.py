"""The app of the batch tests, importable and runnable as a worker process.

    python tests/batches/batch_app.py DSN '{"concurrency": 1}'

runs a worker of `build_app(DSN)` on queue `Q` until SIGTERM. Handlers write
what they do to a `batch_ledger` table through their own autocommit
connection, so the test process sees what other processes ran.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from _support.db import query
from _support.proc_main import serve

from teguh.app import App

Q = "batch_jobs"

LEDGER_DDL = """
create table if not exists batch_ledger (
    id bigserial primary key,
    task_id text not null,
    what text not null,
    params jsonb,
    pid int not null
)
"""


def create_ledger(dsn: str) -> None:
    query(dsn, LEDGER_DDL)


def ledger(dsn: str, what: str) -> list[tuple[str, Any, int]]:
    """`(task_id, params, pid)` of every ledger row of kind `what`, in order."""
    return query(dsn, "select task_id, params, pid from batch_ledger where what = %s order by id", (what,))


def build_app(dsn: str) -> App:
    app = App(dsn, queue=Q)

    def record(ctx: Any, what: str, params: Any = None) -> None:
        query(
            dsn,
            "insert into batch_ledger (task_id, what, params, pid) values (%s, %s, %s::jsonb, %s)",
            (ctx.task_id, what, json.dumps(params), os.getpid()),
        )

    @app.task("item", max_attempts=1)
    def item(params: Any, ctx: Any) -> Any:
        # {"n": i}, optional "fail": raise; "meet": wait (up to 20 s) until
        # `meet` items have started, so the last items end together
        params = params or {}
        record(ctx, "item", params)
        meet = params.get("meet")
        if meet:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                (row,) = query(dsn, "select count(*) from batch_ledger where what = 'item' "
                                     "and (params->>'meet') is not null")
                if row[0] >= meet:
                    break
                time.sleep(0.005)  # polling another process's progress
        if params.get("fail"):
            raise RuntimeError(f"item {params.get('n')} failed")
        return {"n": params.get("n")}

    @app.task("after")
    def after(params: Any, ctx: Any) -> Any:
        record(ctx, "after", params)
        return params

    return app


def main(argv: list[str]) -> int:
    return serve(build_app, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
