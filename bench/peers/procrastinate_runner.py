"""procrastinate, as its docs set it up: `App(connector=PsycopgConnector(...))`, `defer`, `run_worker`."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from importlib.metadata import version

TASK = "noop"
STAMPS = None
"""Set in the worker process when the handler must record its start time."""


def make_app(dsn: str):
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))

    @app.task(name=TASK)
    async def noop(i: int) -> None:
        if STAMPS is not None:
            STAMPS.mark(i)

    return app, noop


class Peer:
    name = "procrastinate"
    module = "bench.peers.procrastinate_runner"
    requires = ("procrastinate", "psycopg")

    def version(self) -> str:
        return f"procrastinate {version('procrastinate')}, psycopg {version('psycopg')}"

    def settings(self, concurrency: int) -> list[str]:
        return [
            "app: `App(connector=PsycopgConnector(conninfo=dsn))`, connector pool at its default "
            "(psycopg_pool: 4 connections); schema by `app.schema_manager.apply_schema()`",
            "spawn: `with app.open(): noop.defer(i=i)` (sync), batches `noop.batch_defer(*[{'i': i}, ...])`",
            f"worker: `app.run_worker_async(concurrency={concurrency})` in its own process; everything else "
            "at its default (all queues, listen_notify on, fetch_job_polling_interval 5 s, "
            "delete_jobs `never`, so finished jobs stay as `succeeded` rows)",
            "handler: `async def noop(i): return None`",
        ]

    def install(self, dsn: str) -> None:
        app, _ = make_app(dsn)
        with app.open():
            app.schema_manager.apply_schema()

    def spawn_single(self, dsn: str, n: int, first: int = 0) -> float:
        app, noop = make_app(dsn)
        with app.open():
            app.check_connection()  # connect before timing
            t0 = time.perf_counter()
            for i in range(first, first + n):
                noop.defer(i=i)
            return time.perf_counter() - t0

    def spawn_batch(self, dsn: str, n: int, size: int, first: int = 0) -> float:
        app, noop = make_app(dsn)
        with app.open():
            app.check_connection()
            t0 = time.perf_counter()
            for start in range(first, first + n, size):
                noop.batch_defer(*[{"i": i} for i in range(start, min(start + size, first + n))])
            return time.perf_counter() - t0

    def spawn_paced(self, dsn: str, count: int, gap: float) -> list[float]:
        app, noop = make_app(dsn)
        times = []
        with app.open():
            app.check_connection()
            for i in range(count):
                times.append(time.time())
                noop.defer(i=i)
                time.sleep(gap)
        return times

    def finished_sql(self, n: int) -> str:
        return "select count(*) from procrastinate_jobs where status = 'succeeded'"

    def leftover_sql(self) -> str | None:
        return None

    def worker_args(self, dsn: str, concurrency: int, stamps: str | None) -> list[str]:
        return ["--dsn", dsn, "--concurrency", str(concurrency), *(["--stamps", stamps] if stamps else [])]


async def _worker(dsn: str, concurrency: int) -> None:
    from bench._workers import barrier

    app, _ = make_app(dsn)
    async with app.open_async():
        barrier()
        await app.run_worker_async(concurrency=concurrency)


def worker(argv: list[str]) -> None:
    global STAMPS
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--stamps")
    args = parser.parse_args(argv)
    if args.stamps:
        from bench._workers import Stamps

        STAMPS = Stamps(args.stamps)
    asyncio.run(_worker(args.dsn, args.concurrency))


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        # procrastinate warns about an app made in __main__: run the imported module's copy
        from bench.peers import procrastinate_runner

        procrastinate_runner.worker(sys.argv[2:])
