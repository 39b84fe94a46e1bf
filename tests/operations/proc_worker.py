"""A worker process for the registry tests.

    python tests/operations/proc_worker.py DSN '{"worker_id": "w1", "heartbeat_interval": 0.3}'

runs a worker of a one-task app on queue "ops" in the main thread (SIGTERM
stops it cleanly) and exits 0 when `Worker.run()` returns.
"""

from __future__ import annotations

import sys

from _support.proc_main import options_of, run_worker, setup_logging

import teguh

Q = "ops"


def main(argv: list[str]) -> int:
    setup_logging()
    app = teguh.App(argv[1], queue=Q, version="proc-1")

    @app.task("noop")
    def noop(params: object, ctx: teguh.TaskContext) -> None:
        return None

    run_worker(app, **options_of(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
