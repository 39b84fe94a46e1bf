"""The chaos tests' app, importable and runnable as a worker process.

    python tests/chaos/chaos_app.py DSN '{"claim_timeout": 3, "concurrency": 4}'

runs a worker on queue `Q` in the main thread (SIGTERM stops it gracefully) and
exits with `Worker.run()`'s outcome: 0 after a stop, 3 when the worker gave up
because too many handlers were stuck (see `max_stuck_runs`). `TEGUH_FAULT` in
its environment arms a crash point (teguh/_faults.py).

Every handler and step execution is written to the `executions` ledger over a
per-thread autocommit connection, so executions of a process that was killed
before anything committed are still counted. The ledger connects to
`CHAOS_LEDGER_DSN` when set (else the worker's DSN): a test that cuts the
worker's network keeps its instrument outside the cut, or a handler blocked
on a silenced ledger call would be a genuinely hung handler, whose lease the
heartbeat rightly keeps extending.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import os
import signal
import sys
import threading
from typing import Any

import psycopg2

from teguh.app import App

Q = "jobs"

_local = threading.local()


def _ledger_conn(dsn: str) -> Any:
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg2.connect(dsn, application_name="chaos-ledger")
        conn.autocommit = True
        _local.conn = conn
    return conn


def record(dsn: str, ctx: Any, step: str) -> int:
    """Write one execution to the ledger; returns its id (ids grow in time order)."""
    for attempt in range(20):
        try:
            with _ledger_conn(dsn).cursor() as cur:
                cur.execute(
                    "insert into executions (task_id, step, run_id, attempt, pid)"
                    " values (%s, %s, %s, %s, %s) returning id",
                    (ctx.task_id, step, ctx.run_id, ctx.attempt, os.getpid()),
                )
                return cur.fetchone()[0]
        except psycopg2.OperationalError:
            # the database is restarting: the ledger must not lose an execution
            _local.conn = None
            threading.Event().wait(min(0.1 * 2**attempt, 2.0))
    raise RuntimeError("ledger unreachable")


def build_app(dsn: str, ledger_dsn: str | None = None) -> App:
    """The handlers every chaos scenario uses; executions go to `ledger_dsn` (default `dsn`)."""
    app = App(dsn, queue=Q)
    ledger = ledger_dsn or dsn
    pause = threading.Event()  # never set: waits below are delays, not synchronisation

    @app.task("steps", retry_strategy={"kind": "fixed", "base_seconds": 0})
    def steps(params: Any, ctx: Any) -> Any:
        # {"n": steps, "seconds": work per step}: each step returns its ledger id,
        # so the stored result names exactly which executions were committed
        params = params or {}
        record(ledger, ctx, "$handler")
        ids = []
        for i in range(params.get("n", 3)):

            def body(i: int = i) -> int:
                # recorded as it starts, so a body killed midway counts too
                execution = record(ledger, ctx, f"s{i}")
                pause.wait(params.get("seconds", 0))
                return execution

            ids.append(ctx.step(f"s{i}", body))
        return {"steps": ids}

    @app.task("poison", max_attempts=3, retry_strategy={"kind": "fixed", "base_seconds": 0})
    def poison(params: Any, ctx: Any) -> Any:
        # kills its own process, the way a segfault or the OOM killer would
        record(ledger, ctx, "$handler")
        os.kill(os.getpid(), signal.SIGKILL)

    @app.task("hang", retry_strategy={"kind": "fixed", "base_seconds": 0})
    def hang(params: Any, ctx: Any) -> Any:
        # {"first_only": true}: only the first attempt hangs, later ones return
        record(ledger, ctx, "$handler")
        if ctx.attempt == 1 or not (params or {}).get("first_only"):
            threading.Event().wait()  # forever, never calling teguh
        return {"attempt": ctx.attempt}

    return app


def main(argv: list[str]) -> int:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(threadName)s %(name)s: %(message)s"
    )
    # `kill -USR1` prints every thread's stack: how a hung worker is diagnosed
    faulthandler.register(signal.SIGUSR1, file=sys.stdout, all_threads=True)
    dsn = argv[1]
    options = json.loads(argv[2]) if len(argv) > 2 else {}
    app = build_app(dsn, os.environ.get("CHAOS_LEDGER_DSN") or dsn)
    worker = app.worker(**options)
    try:
        worker.run()
    finally:
        worker.client.close()
        app.client.close()
    code = worker.exit_code
    logging.getLogger("chaos_app").info("worker process exiting with %d", code)
    logging.shutdown()
    sys.stdout.flush()
    # handler threads may still run (Python cannot stop them): do not join them
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
