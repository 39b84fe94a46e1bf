"""A worker process with one every-second schedule, for the racing and crash tests.

Run as `python sched_app.py DSN WORKER_ID`; `TEGUH_FAULT` in its environment
arms a crash point (teguh._faults). Stops on SIGTERM.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from teguh import App

Q = "sched"
SCHEDULE = "every-second"


def build_app(dsn: str) -> App:
    """The app every process runs: handler `tick`, schedule `every-second` (catch_up all: no gaps)."""
    app = App(dsn, queue=Q, version="1")

    @app.task("tick")
    def tick(params: Any) -> Any:
        return params

    app.schedule(SCHEDULE, "tick", every=1, catch_up="all")
    return app


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    worker = build_app(sys.argv[1]).worker(worker_id=sys.argv[2], poll_interval=30, concurrency=2)
    worker.run()
