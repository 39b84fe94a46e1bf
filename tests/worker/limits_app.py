"""A teguh app with flow-control limits, runnable as a worker process (tests/worker/test_limits.py).

    python tests/worker/limits_app.py DSN '{"concurrency": 3, "poll_interval": 30}'

runs a worker of `build_app(DSN)` on queue `Q` until SIGTERM. Its own queue
(not proc_app's), so the limits its task types register do not put the other
worker tests on the limited claim path.

Handlers record "start" and "end" in the `ledger` table (`_support.ledger`)
through their own connections, so a test can compute how many ran at once
across processes, including processes it killed.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from _support.ledger import Ledger
from _support.proc_main import serve

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
    return serve(build_app, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
