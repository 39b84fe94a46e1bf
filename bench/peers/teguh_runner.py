"""teguh: `Client.spawn_task` / `spawn_tasks` to produce, `App` + `Worker` to consume."""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

QUEUE = "bench"
TASK = "noop"
STEPS_TASK = "steps"
STEPS = 3


class Peer:
    name = "teguh"
    module = "bench.peers.teguh_runner"
    requires = ("teguh", "psycopg2")

    def version(self) -> str:
        import teguh

        return f"teguh {teguh.__version__}, psycopg2 {_psycopg2_version()}"

    def settings(self, concurrency: int) -> list[str]:
        return [
            f"queue `{QUEUE}`; spawn with `Client(dsn).spawn_task(queue, 'noop', i)` and "
            "`spawn_tasks(queue, [{'task_name': 'noop', 'params': i}, ...])` (default pool)",
            f"worker: `App(dsn).worker(queue, concurrency={concurrency})` in its own process; every other "
            "Worker option at its default (threads, claim_timeout 30 s, batch_size = concurrency, "
            "poll_interval 30 s); malloc arenas capped at 2 and `malloc_trim` every 60 s, "
            "as `teguh worker` does",
            "handler: `def noop(params): return None` (sync, run in the worker's thread pool)",
        ]

    def install(self, dsn: str) -> None:
        import teguh

        teguh.install(dsn)
        with teguh.Client(dsn, max_connections=1) as client:
            client.create_queue(QUEUE)

    def spawn_single(self, dsn: str, n: int, first: int = 0) -> float:
        import teguh

        with teguh.Client(dsn, max_connections=1) as client:
            client.list_queues()  # connect before timing
            t0 = time.perf_counter()
            for i in range(first, first + n):
                client.spawn_task(QUEUE, TASK, i)
            return time.perf_counter() - t0

    def spawn_batch(self, dsn: str, n: int, size: int, first: int = 0) -> float:
        import teguh

        with teguh.Client(dsn, max_connections=1) as client:
            client.list_queues()
            t0 = time.perf_counter()
            for start in range(first, first + n, size):
                stop = min(start + size, first + n)
                client.spawn_tasks(QUEUE, [{"task_name": TASK, "params": i} for i in range(start, stop)])
            return time.perf_counter() - t0

    def spawn_paced(self, dsn: str, count: int, gap: float) -> list[float]:
        import teguh

        times = []
        with teguh.Client(dsn, max_connections=1) as client:
            client.list_queues()
            for i in range(count):
                times.append(time.time())
                client.spawn_task(QUEUE, TASK, i)
                time.sleep(gap)
        return times

    def spawn_steps(self, dsn: str, n: int, size: int = 1000) -> float:
        """Spawn n durable-steps tasks, `size` per call (the steps scenario's pre-fill)."""
        import teguh

        with teguh.Client(dsn, max_connections=1) as client:
            t0 = time.perf_counter()
            for start in range(0, n, size):
                stop = min(start + size, n)
                tasks = [{"task_name": STEPS_TASK, "params": i} for i in range(start, stop)]
                client.spawn_tasks(QUEUE, tasks)
            return time.perf_counter() - t0

    def steps_settings(self) -> list[str]:
        return [
            f"durable steps: `@app.task('{STEPS_TASK}')` whose handler `(params, ctx)` calls "
            f"`ctx.step(name, lambda: params)` {STEPS} times (each a checkpoint, one `c_` row); "
            "pre-filled with `spawn_tasks`, 1,000 per call; the worker as above",
        ]

    def finished_sql(self, n: int) -> str:
        return f"select count(*) from teguh.t_{QUEUE} where state = 'completed'"

    def leftover_sql(self) -> str | None:
        """Rows still in the dispatch and lease tables (both should be empty after a drain)."""
        return f"select (select count(*) from teguh.p_{QUEUE}) + (select count(*) from teguh.r_{QUEUE})"

    def worker_args(self, dsn: str, concurrency: int, stamps: str | None) -> list[str]:
        return ["--dsn", dsn, "--concurrency", str(concurrency), *(["--stamps", stamps] if stamps else [])]

    def steps_worker_args(self, dsn: str, concurrency: int) -> list[str]:
        return ["--dsn", dsn, "--concurrency", str(concurrency), "--steps"]


def _psycopg2_version() -> str:
    import psycopg2

    return psycopg2.__version__.split()[0]


def _memtrace(path: str) -> None:
    from bench._pg import rss_kib

    with open(path, "a") as out:
        while True:
            out.write(f"{time.time():.0f} {rss_kib(os.getpid()) / 1024:.1f} {sys.getallocatedblocks()}\n")
            out.flush()
            time.sleep(5)  # a sampling period, not synchronisation


def worker(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--stamps")
    parser.add_argument("--steps", action="store_true", help="serve the durable-steps task only")
    args = parser.parse_args(argv)

    import teguh
    from bench._workers import Stamps, barrier

    app = teguh.App(args.dsn, queue=QUEUE)
    if args.steps:

        @app.task(STEPS_TASK)
        def steps(params, ctx):
            for k in range(1, STEPS + 1):
                ctx.step(f"step-{k}", lambda: params)

    elif args.stamps:
        stamps = Stamps(args.stamps)

        @app.task(TASK)
        def noop(params):
            stamps.mark(params)

    else:

        @app.task(TASK)
        def noop(params):
            return None

    # as `teguh worker` does in the process it owns
    from teguh import _malloc

    _malloc.tune_worker_process()
    trace = os.environ.get("TEGUH_BENCH_MEMTRACE")
    if trace:  # diagnostic: the worker's RSS and live Python blocks every 5 s
        threading.Thread(target=_memtrace, args=(trace,), daemon=True).start()
    worker = app.worker(QUEUE, concurrency=args.concurrency)
    barrier()
    worker.run()


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        worker(sys.argv[2:])
