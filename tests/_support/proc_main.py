"""The `main` of the test apps' scripts: log to stdout, read the options, run one worker.

A folder's app script (`tests/worker/proc_app.py`, `tests/batches/batch_app.py`,
...) builds its app and hands it here, so the scripts keep only their
handlers. The process's log (stdout, which `_support.processes` sends to a
file) is what the tests print when an assertion about the process fails.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from teguh import App, Worker

__all__ = ["options_of", "run_worker", "serve", "setup_logging"]


def setup_logging() -> None:
    """INFO lines with time, thread and logger to stdout (the process's log file)."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(threadName)s %(name)s: %(message)s"
    )


def options_of(argv: list[str]) -> dict[str, Any]:
    """The worker options of `SCRIPT DSN [OPTIONS_JSON]` (empty without them)."""
    return json.loads(argv[2]) if len(argv) > 2 else {}


def run_worker(app: App, *args: Any, **options: Any) -> Worker:
    """Run `app.worker(*args, **options)` in this thread until it stops; close both clients after.

    Runs in the main thread, so SIGTERM and SIGINT stop the worker gracefully.
    Returns the stopped worker (its `stuck_handlers`, ...).
    """
    worker = app.worker(*args, **options)
    try:
        worker.run()
    finally:
        worker.client.close()
        app.client.close()
    return worker


def serve(build_app: Callable[[str], App], argv: list[str]) -> int:
    """The whole `main` of a script whose app needs only the DSN: `SCRIPT DSN [OPTIONS_JSON]`."""
    setup_logging()
    run_worker(build_app(argv[1]), **options_of(argv))
    return 0
