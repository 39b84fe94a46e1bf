"""absurd, as its SDK's README sets it up: `Absurd(dsn)`, `spawn`, `register_task` + `start_worker`.

The schema is the SQL bundled in absurdctl (what `absurdctl init` applies
through psql); the SDK itself ships no schema.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from importlib.metadata import version

QUEUE = "bench"
TASK = "noop"
STEPS_TASK = "steps"
STEPS = 3
CLAIM_TIMEOUT = 120
"""`start_worker`'s default claim_timeout (seconds)."""
POLL_INTERVAL = 0.25
"""`start_worker`'s default poll_interval (seconds): an idle worker claims this often (no LISTEN)."""


def _client(dsn: str):
    from absurd_sdk import Absurd

    return Absurd(dsn, queue_name=QUEUE)  # one psycopg 3 connection, autocommit


class Peer:
    name = "absurd"
    module = "bench.peers.absurd_runner"
    requires = ("absurd_sdk", "absurdctl", "psycopg")

    spawn_batch = None
    """absurd has no batch spawn: `absurd.spawn_task` inserts one task, and the SDK has only `spawn`."""

    def version(self) -> str:
        return (
            f"absurd-sdk {version('absurd-sdk')}, absurdctl {version('absurdctl')} (schema), "
            f"psycopg {version('psycopg')}"
        )

    def settings(self, concurrency: int) -> list[str]:
        return [
            "schema: absurdctl's bundled `absurd.sql` (what `absurdctl init` applies with psql), run as one "
            f"script; queue `{QUEUE}` by `Absurd(dsn).create_queue('{QUEUE}')`: unpartitioned, default "
            "policy (cleanup_ttl 30 days, applied only by `absurdctl cleanup` or pg_cron, so finished "
            "tasks stay as `completed` rows in `t_` and `r_`)",
            f"spawn: `Absurd(dsn, queue_name='{QUEUE}').spawn('noop', i, queue='{QUEUE}')` (sync client, one "
            "psycopg 3 connection in autocommit; default max_attempts 5). absurd has no batch spawn (the "
            "SDK has `spawn` only, the schema `spawn_task` for one task), so its batch row is n/a and the "
            "drain's pre-fill spawns one at a time",
            f"worker: `app.start_worker(concurrency={concurrency})` (the sync worker of the SDK's README) in "
            f"its own process: handlers run on a pool of {concurrency} threads, and claims, checkpoint "
            "loads and completions of all of them go through the client's one connection; every other "
            f"option at its default (batch_size = concurrency, claim_timeout {CLAIM_TIMEOUT} s, "
            f"poll_interval {POLL_INTERVAL} s: absurd polls, it has no LISTEN/NOTIFY)",
            "handler: `def noop(params, ctx): return None` (sync, run in the worker's thread pool)",
        ]

    def install(self, dsn: str) -> None:
        _apply_schema(dsn)
        app = _client(dsn)
        try:
            app.create_queue(QUEUE)
        finally:
            app.close()

    def spawn_single(self, dsn: str, n: int, first: int = 0) -> float:
        app = _client(dsn)
        try:
            app.list_queues()  # the connection is open: warm it up before timing
            t0 = time.perf_counter()
            for i in range(first, first + n):
                app.spawn(TASK, i, queue=QUEUE)
            return time.perf_counter() - t0
        finally:
            app.close()

    def spawn_paced(self, dsn: str, count: int, gap: float) -> list[float]:
        app = _client(dsn)
        times = []
        try:
            app.list_queues()
            for i in range(count):
                times.append(time.time())
                app.spawn(TASK, i, queue=QUEUE)
                time.sleep(gap)
            return times
        finally:
            app.close()

    def spawn_steps(self, dsn: str, n: int) -> float:
        """Spawn n durable-steps tasks, one call each (absurd has no batch spawn)."""
        app = _client(dsn)
        try:
            t0 = time.perf_counter()
            for i in range(n):
                app.spawn(STEPS_TASK, i, queue=QUEUE)
            return time.perf_counter() - t0
        finally:
            app.close()

    def steps_settings(self) -> list[str]:
        return [
            f"durable steps: `@app.register_task('{STEPS_TASK}')` whose handler `(params, ctx)` calls "
            f"`ctx.step(name, lambda: params)` {STEPS} times (each a checkpoint); the worker as above",
        ]

    def finished_sql(self, n: int) -> str:
        return f"select count(*) from absurd.t_{QUEUE} where state = 'completed'"

    def leftover_sql(self) -> str | None:
        return None

    def worker_args(self, dsn: str, concurrency: int, stamps: str | None) -> list[str]:
        return ["--dsn", dsn, "--concurrency", str(concurrency), *(["--stamps", stamps] if stamps else [])]

    def steps_worker_args(self, dsn: str, concurrency: int) -> list[str]:
        return ["--dsn", dsn, "--concurrency", str(concurrency), "--steps"]


def _apply_schema(dsn: str) -> None:
    """absurdctl's bundled schema (what `absurdctl init` pipes to psql), as one script over psycopg2."""
    import psycopg2
    from absurdctl import BUNDLED_SCHEMA_SQL  # a release bundles the schema of its own version

    conn = psycopg2.connect(dsn)
    try:
        conn.autocommit = True  # psycopg2 sends the script as one query: one implicit transaction
        conn.cursor().execute(BUNDLED_SCHEMA_SQL)
    finally:
        conn.close()


def worker(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--stamps")
    parser.add_argument("--steps", action="store_true", help="serve the durable-steps task only")
    args = parser.parse_args(argv)

    from bench._workers import Stamps, barrier

    app = _client(args.dsn)
    if args.steps:

        @app.register_task(STEPS_TASK)
        def steps(params, ctx):
            for k in range(1, STEPS + 1):
                ctx.step(f"step-{k}", lambda: params)

    elif args.stamps:
        stamps = Stamps(args.stamps)

        @app.register_task(TASK)
        def noop(params, ctx):
            stamps.mark(int(params))

    else:

        @app.register_task(TASK)
        def noop(params, ctx):
            return None

    # absurd's worker installs no signal handler; stop it the way its API offers
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: app.stop_worker())
    barrier()
    app.start_worker(concurrency=args.concurrency)
    app.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        worker(sys.argv[2:])
