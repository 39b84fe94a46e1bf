"""DBOS (PyPI `dbos`), durable-steps scenario only: a workflow of three `@DBOS.step`s on a DBOS Queue.

DBOS is a durable-execution library rather than a job queue, so it takes part
in the durable-steps scenario (`bench/compare.py --scenarios steps`) only:
the harness enqueues workflows with `DBOSClient.enqueue`, and the worker
process launches DBOS, whose queue thread polls the queue and runs each
workflow on its thread pool. Its schema is made the way DBOS makes it: the
first `DBOS.launch()` on a database runs its migrations (done in `install`,
in a subprocess, since DBOS is one instance per process).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from importlib.metadata import version

QUEUE = "bench"
WORKFLOW = "steps"
STEPS = 3
POLLING_INTERVAL = float(os.environ.get("TEGUH_BENCH_DBOS_POLLING", "0.05"))
"""Seconds between the queue thread's polls of the queue (DBOS's default is 1.0).

DBOS dequeues only when its queue thread polls (no LISTEN for queued work),
at most `worker_concurrency` workflows per poll. At the 1 s default the
drain is capped near 16 tasks per second whatever the machine; 50 ms is
the figure the earlier comparisons used (issue 16), fast enough that the
poll is not what limits it, without turning the poller into a busy loop. TEGUH_BENCH_DBOS_POLLING
overrides it (a diagnostic: is the poll the limit?)."""


def _config(dsn: str) -> dict:
    return {
        "name": "teguh-bench",
        "system_database_url": dsn,
        "log_level": "WARNING",
    }


class Peer:
    name = "dbos"
    module = "bench.peers.dbos_runner"
    requires = ("dbos", "psycopg")
    scenarios = ("steps",)
    """The only scenario DBOS takes part in."""

    spawn_batch = None

    def version(self) -> str:
        return f"dbos {version('dbos')}"

    def settings(self, concurrency: int) -> list[str]:
        return [
            "schema: what the first `DBOS.launch()` on the database creates (its migrations), in the "
            "database of the scenario (DBOS's system database), schema `dbos`",
            f"queue `{QUEUE}`: `DBOS.register_queue('{QUEUE}', worker_concurrency={concurrency}, "
            f"polling_interval_sec={POLLING_INTERVAL})`; DBOS dequeues only when its queue thread polls, "
            f"so the polling interval is lowered from its 1 s default (at 1 s it drains about "
            f"{concurrency} workflows per second, the poll and not the work being the limit)",
            f"enqueue: `DBOSClient(system_database_url=dsn).enqueue({{'queue_name': '{QUEUE}', "
            f"'workflow_name': '{WORKFLOW}'}}, i)`, one call per workflow (DBOS has no batch enqueue)",
            "worker: `DBOS(config=...)` + `DBOS.launch()` in its own process (launched at the start of "
            "the measured time: a launch starts dequeuing at once); every other option at its default",
            f"workflow: `@DBOS.workflow()` calling {STEPS} `@DBOS.step()` functions that return their "
            "argument (each step's output is checkpointed in `operation_outputs`)",
        ]

    def install(self, dsn: str) -> None:
        # DBOS is one instance per process: launch it once in a child to run
        # its migrations and persist the queue's configuration
        subprocess.run(
            [sys.executable, "-m", self.module, "install", "--dsn", dsn],
            check=True,
            timeout=120,
        )

    def spawn_steps(self, dsn: str, n: int) -> float:
        from dbos import DBOSClient

        client = DBOSClient(system_database_url=dsn)
        try:
            t0 = time.perf_counter()
            for i in range(n):
                client.enqueue({"queue_name": QUEUE, "workflow_name": WORKFLOW}, i)
            return time.perf_counter() - t0
        finally:
            client.destroy()

    def finished_sql(self, n: int) -> str:
        return "select count(*) from dbos.workflow_status where status = 'SUCCESS'"

    def leftover_sql(self) -> str | None:
        return None

    def steps_worker_args(self, dsn: str, concurrency: int) -> list[str]:
        return ["--dsn", dsn, "--concurrency", str(concurrency)]

    def steps_settings(self) -> list[str]:
        return []  # all said in settings(): DBOS runs this scenario only


def _register(concurrency: int):
    from dbos import DBOS

    return DBOS.register_queue(
        QUEUE,
        worker_concurrency=concurrency,
        polling_interval_sec=POLLING_INTERVAL,
        on_conflict="always_update",
    )


def _define() -> None:
    from dbos import DBOS

    @DBOS.step()
    def step_one(x):
        return x

    @DBOS.step()
    def step_two(x):
        return x

    @DBOS.step()
    def step_three(x):
        return x

    @DBOS.workflow(name=WORKFLOW)
    def steps(i):
        return step_three(step_two(step_one(i)))


def install(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    from dbos import DBOS

    DBOS(config=_config(args.dsn))
    _define()
    DBOS.launch()
    _register(args.concurrency)
    DBOS.destroy()


def worker(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    args = parser.parse_args(argv)

    from dbos import DBOS

    from bench._workers import barrier

    DBOS(config=_config(args.dsn))
    _define()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    barrier()
    t0 = time.perf_counter()
    DBOS.launch()
    _register(args.concurrency)
    print(f"launch took {time.perf_counter() - t0:.3f} s", file=sys.stderr, flush=True)
    stop.wait()
    DBOS.destroy(workflow_completion_timeout_sec=0)


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        worker(sys.argv[2:])
    elif sys.argv[1:2] == ["install"]:
        install(sys.argv[2:])
