"""A teguh app with flow-control limits, runnable as a worker process (tests/worker/test_limits.py).

    python tests/worker/limits_app.py DSN '{"concurrency": 3, "poll_interval": 30}'

runs a worker of `build_app(DSN)` on queue `Q` until SIGTERM. Its own queue
(not proc_app's), so the limits its task types register do not put the other
worker tests on the limited claim path.

Handlers record "start" and "end" in the `ledger` table (tests/worker/proc_app.py)
through their own connections, so a test can compute how many ran at once
across processes, including processes it killed.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from proc_app import Ledger

from teguh.app import App

Q = "limited"

RETRY_NOW = {"kind": "fixed", "base_seconds": 0}


def build_app(dsn: str) -> App:
    """Handlers: `capped` (concurrency 2), `solo` (concurrency 1, with ways to end a
    first attempt early), `keyed` (key_concurrency 1), `rated` (10 starts a second)."""
    app = App(dsn, queue=Q)
    ledger = Ledger(dsn)

    def hold(params: Any, ctx: Any) -> dict[str, Any]:
        ledger.record(ctx.task_id, "start", ctx.attempt)
        threading.Event().wait((params or {}).get("seconds", 0.2))
        ledger.record(ctx.task_id, "end", ctx.attempt)
        return {"attempt": ctx.attempt}

    @app.task("capped", concurrency=2)
    def capped(params: Any, ctx: Any) -> Any:
        return hold(params, ctx)

    @app.task("keyed", key_concurrency=1)
    def keyed(params: Any, ctx: Any) -> Any:
        return hold(params, ctx)

    @app.task("solo", concurrency=1, retry_strategy={"kind": "fixed", "base_seconds": 3}, max_attempts=5)
    def solo(params: Any, ctx: Any) -> Any:
        # {"first": "fail" | "sleep" | "block"}: how the first attempt ends its run
        params = params or {}
        ledger.record(ctx.task_id, "start", ctx.attempt)
        first = params.get("first")
        if ctx.attempt == 1 and first == "fail":
            ledger.record(ctx.task_id, "end", ctx.attempt)
            raise RuntimeError("first attempt fails (retried in 3 s)")
        if first == "sleep" and not ledger.count(ctx.task_id, "end"):
            ledger.record(ctx.task_id, "end", ctx.attempt)
            ctx.sleep_for("nap", 3)
        if ctx.attempt == 1 and first == "block":
            threading.Event().wait()  # until the test kills this process
        ledger.record(ctx.task_id, "end", ctx.attempt)
        return {"attempt": ctx.attempt}

    @app.task("rated", rate_limit="10/s")
    def rated(params: Any, ctx: Any) -> Any:
        ledger.record(ctx.task_id, "start", ctx.attempt)
        return None

    return app


def main(argv: list[str]) -> int:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(threadName)s %(name)s: %(message)s"
    )
    dsn = argv[1]
    options = json.loads(argv[2]) if len(argv) > 2 else {}
    app = build_app(dsn)
    worker = app.worker(**options)
    try:
        worker.run()
    finally:
        worker.client.close()
        app.client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
