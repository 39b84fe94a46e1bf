"""An app whose task hangs, run as a worker process that the crash test kills with SIGKILL.

    python tests/observe/crash_app.py DSN

The in-process worker of the test builds the same app with `build_app(DSN)`.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from teguh.app import App

Q = "obs"


def build_app(dsn: str, received: list[Any] | None = None) -> App:
    app = App(dsn, queue=Q)

    @app.task("job", max_attempts=1, on_failure="notify-ops")
    def job(params: Any) -> None:
        threading.Event().wait()  # hangs until the process is killed

    @app.task("notify-ops")
    def notify(params: Any) -> None:
        if received is not None:
            received.append(params)

    return app


if __name__ == "__main__":
    build_app(sys.argv[1]).worker(claim_timeout=2, concurrency=1, prefetch=0).run()
