"""Test helpers shipped with teguh: eager execution, a fake clock, a worker in a thread.

* `eager(app)` runs spawned tasks inline, in memory, without a database:
  steps, durable sleeps (driven by `runner.advance(...)`) and events
  (`runner.emit_event(...)`) behave as they do in a worker (`eager.py`).
* `FakeClock(app)` pins the engine's clock (`teguh.fake_now`) on every
  connection of an app's client and its workers, against a real database, so
  `clock.advance(days=1)` finishes a task's `ctx.sleep_for("wait", timedelta(days=1))` now
  (`clock.py`).
* `worker_thread(app)` runs a real `Worker` in a thread for the length of a
  `with` block; `WorkerThread` does the same with `wait_idle()` (`workers.py`).
* `temporary_database()` creates a database with the schema installed and
  drops it afterwards; `use_database(app, dsn)` points an app at it (`databases.py`).

The pytest plugin (`_teguh_pytestplugin`, loaded automatically) wraps these as
fixtures: `teguh_dsn`, `teguh_app`, `teguh_eager`, `teguh_clock`, `teguh_worker`.
"""

from __future__ import annotations

from .clock import FakeClock
from .databases import temporary_database, use_database
from .eager import EagerRunner, EagerTask, eager
from .workers import WORKER_START_TIMEOUT as WORKER_START_TIMEOUT
from .workers import WORKER_STOP_TIMEOUT as WORKER_STOP_TIMEOUT
from .workers import WorkerThread, worker_thread

__all__ = [
    "EagerRunner",
    "EagerTask",
    "FakeClock",
    "WorkerThread",
    "eager",
    "temporary_database",
    "use_database",
    "worker_thread",
]
