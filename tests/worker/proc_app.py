"""A small teguh app for the worker tests, importable and runnable as a worker process.

    python tests/worker/proc_app.py DSN '{"claim_timeout": 2, "concurrency": 1}'

runs a worker of `build_app(DSN)` on queue `Q` in the main thread (so SIGTERM and
SIGINT stop it gracefully) and exits 0 when `Worker.run()` returns.

Handlers record what they do in the `ledger` table (`_support.ledger`) through
their own autocommit connection, so the test process can see executions of a
process it killed.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any

from _support.ledger import Ledger, create_ledger
from _support.proc_main import options_of, run_worker, setup_logging

from teguh.app import App

Q = "jobs"

__all__ = ["Q", "Ledger", "build_app", "create_ledger", "main"]


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
    setup_logging()
    dsn = argv[1]
    options = options_of(argv)
    app = build_app(
        dsn, options.pop("app_version", None), typed_max_attempts=options.pop("typed_max_attempts", 4)
    )
    worker = run_worker(app, **options)
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
