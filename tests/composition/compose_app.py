"""The app of the composition tests, importable and runnable as a worker process.

    python tests/composition/compose_app.py DSN '{"concurrency": 4, "queues": ["jobs", "side"]}'

runs a worker of `build_app(DSN)` in the main thread (SIGTERM stops it).
Handlers write each run to the `ledger` table (`_support.ledger`) through their
own autocommit connection, so the test process sees the runs of a process it killed.
Options besides the worker's: `hold_child` and `hold_work` (seconds a
`slow-child` run, and the work step of a `busy-parent`, sleep, so a test can
kill the process mid-run). `awaiting-parent` waits for a `stepping-child`
(queue `side`) that records a `tick` per step and `stepping-child-cancelled`
when a step tells it its task was cancelled.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from _support.ledger import Ledger, create_ledger
from _support.proc_main import options_of, run_worker, setup_logging

from teguh.app import App
from teguh.errors import Cancelled

Q = "jobs"
SIDE = "side"

__all__ = ["Q", "SIDE", "Ledger", "build_app", "create_ledger", "main"]


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

    @app.task("stepping-child", queue=SIDE)
    def stepping_child(params: Any, ctx: Any) -> Any:
        # one short step after another: a cancel shows at the next one (AB001 -> Cancelled)
        step = 0
        try:
            for step in range(params["steps"]):
                ctx.step(f"tick-{step}", _tick, ledger, ctx.task_id, params["hold"])
        except Cancelled:
            ledger.record(ctx.task_id, "stepping-child-cancelled", step)
            raise
        ledger.record(ctx.task_id, "stepping-child-done")
        return params["steps"]

    @app.task("awaiting-parent")
    def awaiting_parent(params: Any, ctx: Any) -> Any:
        ledger.record(ctx.task_id, "awaiting-parent-run")
        return ctx.wait_for(ctx.spawn_task("stepping-child", params, queue=SIDE))

    return app


def _tick(ledger: Ledger, task_id: str, hold: float) -> bool:
    ledger.record(task_id, "tick")
    time.sleep(hold)
    return True


def _work(ledger: Ledger, task_id: str, hold: float) -> bool:
    ledger.record(task_id, "work-start")
    time.sleep(hold)
    return True


def main() -> None:
    setup_logging()
    dsn = sys.argv[1]
    options = options_of(sys.argv)
    app = build_app(dsn, hold_child=options.pop("hold_child", 0.0), hold_work=options.pop("hold_work", 0.0))
    if not options.get("queues"):
        options.pop("queues", None)  # none given: the app's queues
    run_worker(app, **options)


if __name__ == "__main__":
    main()
