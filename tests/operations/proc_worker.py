"""A worker process for the registry tests.

    python tests/operations/proc_worker.py DSN '{"worker_id": "w1", "heartbeat_interval": 0.3}'

runs a worker of a one-task app on queue "ops" in the main thread (SIGTERM
stops it cleanly) and exits 0 when `Worker.run()` returns.
"""

from __future__ import annotations

import json
import logging
import sys

import teguh

Q = "ops"


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(name)s: %(message)s")
    app = teguh.App(argv[1], queue=Q, version="proc-1")

    @app.task("noop")
    def noop(params: object, ctx: teguh.TaskContext) -> None:
        return None

    worker = app.worker(**json.loads(argv[2]))
    try:
        worker.run()
    finally:
        worker.client.close()
        app.client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
