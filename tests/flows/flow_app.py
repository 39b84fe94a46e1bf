"""Flows for the flow tests, importable and runnable as a worker process.

    python tests/flows/flow_app.py DSN '{"concurrency": 1, "claim_timeout": 2}'

runs a worker of `build_app(DSN)` on queue `Q` in the main thread and exits 0
when `Worker.run()` returns. Steps record what they do in a `flow_ledger`
table through their own autocommit connections, with their process id and
their start and end times, so the test process can see what a process it
killed did and whether two steps overlapped.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any

from _support.db import query
from _support.proc_main import options_of, run_worker, setup_logging

import teguh

Q = "jobs"

LEDGER_DDL = """
create table if not exists flow_ledger (
    id bigserial primary key,
    what text not null,
    pid int not null,
    started_at float8 not null,
    ended_at float8 not null
)
"""


class Ledger:
    """Writes and reads `flow_ledger`, one short-lived autocommit connection per call."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        return query(self.dsn, sql, args)

    def create(self) -> None:
        self._query(LEDGER_DDL)

    def record(self, what: str, started_at: float | None = None) -> None:
        now = time.time()
        self._query(
            "insert into flow_ledger (what, pid, started_at, ended_at) values (%s, %s, %s, %s)",
            (what, os.getpid(), started_at if started_at is not None else now, now),
        )

    def whats(self) -> list[str]:
        return [row[0] for row in self._query("select what from flow_ledger order by id")]

    def count(self, what: str) -> int:
        return self.whats().count(what)

    def rows(self, what: str) -> list[tuple[int, float, float]]:
        """`(pid, started_at, ended_at)` of each record of `what`."""
        query = "select pid, started_at, ended_at from flow_ledger where what = %s order by id"
        return [tuple(r) for r in self._query(query, (what,))]


def build_app(dsn: str) -> tuple[teguh.App, dict[str, teguh.Flow]]:
    """The app and its flows, the same in the test process and in worker processes."""
    app = teguh.App(dsn, queue=Q)
    ledger = Ledger(dsn)

    def timed(name: str, seconds: float, result: Any) -> Any:
        started = time.time()
        threading.Event().wait(seconds)
        ledger.record(name, started)
        return result

    # two branches that each take a while: on two workers they overlap
    parallel = teguh.Flow("parallel", app=app)

    @parallel.step("root")
    def root(inp: Any, up: Any) -> Any:
        return timed("root", 0, {"n": inp["n"]})

    @parallel.step("left", depends_on=["root"])
    def left(inp: Any, up: Any) -> Any:
        return timed("left", inp["seconds"], up["root"]["n"] + 1)

    @parallel.step("right", depends_on=["root"])
    def right(inp: Any, up: Any) -> Any:
        return timed("right", inp["seconds"], up["root"]["n"] + 2)

    @parallel.step("join", depends_on=["left", "right"])
    def join(inp: Any, up: Any) -> Any:
        return timed("join", 0, up["left"] + up["right"])

    # a flow whose handler blocks (in a condition, which the flow task itself
    # evaluates) after two finished steps, the first time only: the test
    # SIGKILLs the process there
    crashy = teguh.Flow("crashy", app=app)

    @crashy.step("a")
    def a(inp: Any, up: Any) -> Any:
        return timed("a", 0, "A")

    @crashy.step("b", depends_on=["a"])
    def b(inp: Any, up: Any) -> Any:
        return timed("b", 0, up["a"] + "B")

    def blocks_the_first_time(up: Any) -> bool:
        ledger.record("condition")
        if ledger.count("condition") == 1:
            threading.Event().wait()  # forever: the test kills this process
        return True

    @crashy.step("c", depends_on=["b"], condition=blocks_the_first_time)
    def c(inp: Any, up: Any) -> Any:
        return timed("c", 0, up["b"] + "C")

    return app, {"parallel": parallel, "crashy": crashy}


def main(argv: list[str]) -> int:
    setup_logging()
    app, _ = build_app(argv[1])
    run_worker(app, Q, **options_of(argv))
    logging.getLogger("flow_app").info("worker process exiting normally")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
