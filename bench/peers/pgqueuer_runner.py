"""pgqueuer, as its quick start sets it up: asyncpg, `Queries.enqueue`, `PgQueuer` + entrypoint."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from importlib.metadata import version

ENTRYPOINT = "noop"
BATCH_SIZE = 10
"""`PgQueuer.run`'s default batch_size (and `pgq run`'s)."""

MAX_CONCURRENT_TASKS = None
"""pgqueuer's default: no cap on the jobs one worker runs at once.

Its cap, `max_concurrent_tasks`, must be at least twice `batch_size`, so 16
would need batch_size 8; with no-op handlers a cap of 16 (batch 8) or 20
(batch 10) drained 25-35 % slower than no cap on the benchmark machine, so the
peer keeps its default rather than be handicapped.
"""


class Peer:
    name = "pgqueuer"
    module = "bench.peers.pgqueuer_runner"
    requires = ("pgqueuer", "asyncpg")

    def version(self) -> str:
        return f"pgqueuer {version('pgqueuer')}, asyncpg {version('asyncpg')}"

    def settings(self, concurrency: int) -> list[str]:
        return [
            "schema: `Queries.install()` (what `pgq install` runs; durability `durable`, all tables logged)",
            "spawn: `await Queries(AsyncpgDriver(conn)).enqueue('noop', payload)`; batches pass lists "
            "of entrypoints, payloads and priorities to the same call",
            f"worker: `PgQueuer.from_asyncpg_connection(conn)`, `await pgq.run()` in its own process (what "
            f"`pgq run` calls), on uvloop as `pgq run` does; every option at its default (batch_size "
            f"{BATCH_SIZE}, dequeue_timeout 30 s, heartbeat_timeout 30 s, continuous mode)",
            f"concurrency: not capped at {concurrency}. pgqueuer runs async handlers without a limit by "
            "default; its cap `max_concurrent_tasks` must be >= 2 x batch_size (16 needs batch_size 8), and "
            "caps of 16 and 20 drained 25-35 % slower here, so pgqueuer keeps its default",
            "handler: `async def noop(job): return None`",
        ]

    def install(self, dsn: str) -> None:
        asyncio.run(_install(dsn))

    def spawn_single(self, dsn: str, n: int, first: int = 0) -> float:
        return asyncio.run(_spawn_single(dsn, n, first))

    def spawn_batch(self, dsn: str, n: int, size: int, first: int = 0) -> float:
        return asyncio.run(_spawn_batch(dsn, n, size, first))

    def spawn_paced(self, dsn: str, count: int, gap: float) -> list[float]:
        return asyncio.run(_spawn_paced(dsn, count, gap))

    def finished_sql(self, n: int) -> str:
        # a finished job leaves the queue table in the statement that logs it
        return f"select {int(n)} - count(*) from pgqueuer"

    def leftover_sql(self) -> str | None:
        return None

    def worker_args(self, dsn: str, concurrency: int, stamps: str | None) -> list[str]:
        return ["--dsn", dsn, "--concurrency", str(concurrency), *(["--stamps", stamps] if stamps else [])]


async def _queries(dsn: str):
    import asyncpg
    from pgqueuer.queries import Queries

    conn = await asyncpg.connect(dsn)
    return conn, Queries.from_asyncpg_connection(conn)


async def _install(dsn: str) -> None:
    conn, queries = await _queries(dsn)
    try:
        await queries.install()
    finally:
        await conn.close()


async def _spawn_single(dsn: str, n: int, first: int) -> float:
    conn, queries = await _queries(dsn)
    try:
        t0 = time.perf_counter()
        for i in range(first, first + n):
            await queries.enqueue(ENTRYPOINT, str(i).encode())
        return time.perf_counter() - t0
    finally:
        await conn.close()


async def _spawn_batch(dsn: str, n: int, size: int, first: int) -> float:
    conn, queries = await _queries(dsn)
    try:
        t0 = time.perf_counter()
        for start in range(first, first + n, size):
            ids = range(start, min(start + size, first + n))
            await queries.enqueue([ENTRYPOINT] * len(ids), [str(i).encode() for i in ids], [0] * len(ids))
        return time.perf_counter() - t0
    finally:
        await conn.close()


async def _spawn_paced(dsn: str, count: int, gap: float) -> list[float]:
    conn, queries = await _queries(dsn)
    times = []
    try:
        for i in range(count):
            times.append(time.time())
            await queries.enqueue(ENTRYPOINT, str(i).encode())
            await asyncio.sleep(gap)
        return times
    finally:
        await conn.close()


async def _worker(dsn: str, concurrency: int, stamps_path: str | None) -> None:
    import asyncpg
    from pgqueuer import PgQueuer
    from pgqueuer.models import Job

    from bench._workers import Stamps, barrier

    stamps = Stamps(stamps_path) if stamps_path else None
    conn = await asyncpg.connect(dsn)
    pgq = PgQueuer.from_asyncpg_connection(conn)

    if stamps is not None:

        @pgq.entrypoint(ENTRYPOINT)
        async def noop(job: Job) -> None:
            stamps.mark(int(job.payload))

    else:

        @pgq.entrypoint(ENTRYPOINT)
        async def noop(job: Job) -> None:
            return None

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, pgq.shutdown.set)  # as `pgq run` does
    barrier()
    await pgq.run(batch_size=BATCH_SIZE, max_concurrent_tasks=MAX_CONCURRENT_TASKS)


def worker(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--stamps")
    args = parser.parse_args(argv)
    try:
        import uvloop  # `pgq run` runs on uvloop when it is installed (pgqueuer depends on it)
    except ImportError:
        asyncio.run(_worker(args.dsn, args.concurrency, args.stamps))
    else:
        uvloop.run(_worker(args.dsn, args.concurrency, args.stamps))


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        worker(sys.argv[2:])
