"""The drain of a queue with flow-control limits, as a ratio to the plain drain.

    python bench/limits.py                 # N = 5,000 no-op tasks, 3 rounds, one worker of concurrency 16
    python bench/limits.py -n 20000 --rounds 5

Each round drains three fresh queues filled with N no-op tasks, in turn: plain
(no limit), one concurrency key per task over 1,000 keys (key_concurrency 1),
and a type capped at the worker's concurrency (so the cap binds but never
starves the worker). The worker runs in this process (a `teguh.testing.WorkerThread`);
the database is TEGUH_DSN, else the embedded PostgreSQL. Prints one line per
round and the medians of the ratios (docs/benchmarks.md, docs/flow-control.md).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg2

from teguh import Client
from teguh._options import task_type
from teguh.app import App
from teguh.testing import WorkerThread


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def drain(
    client: Client, conn: Any, queue: str, n: int, concurrency: int, limits: dict, keyed: bool
) -> float:
    """Fill `queue` with n no-op tasks, then drain it with one worker; returns tasks per second."""
    client.create_queue(queue)
    app = App(client=client, queue=queue)

    @app.task("noop", **limits)
    def noop(params: Any) -> None:
        return None

    client._register_task_types(queue, [task_type("noop", dict(limits), None)], None)
    keys = [{"concurrency_key": f"k{i % 1000}"} if keyed else {} for i in range(n)]
    items = [{"task_name": "noop", **key} for key in keys]
    for i in range(0, n, 1000):
        client.spawn_tasks(queue, items[i : i + 1000])
    handle = WorkerThread(app.worker(concurrency=concurrency, poll_interval=30))
    start = time.monotonic()
    handle.start()
    with conn.cursor() as cur:
        while True:
            cur.execute(f"select count(*) from teguh.t_{queue} where state = 'completed'")
            if cur.fetchone()[0] == n:
                break
            time.sleep(0.01)
    took = time.monotonic() - start
    handle.stop()
    handle.worker.client.close()
    client.drop_queue(queue)
    return n / took


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", "--jobs", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=16)
    args = p.parse_args(argv)
    client = Client()
    client.install_schema()
    conn = psycopg2.connect(client.dsn)
    conn.autocommit = True
    keys, typed = [], []
    for rnd in range(args.rounds):
        plain = drain(client, conn, f"bench_plain_{rnd}", args.jobs, args.concurrency, {}, False)
        keyed = drain(client, conn, f"bench_keys_{rnd}", args.jobs, args.concurrency, {}, True)
        cap = {"concurrency": args.concurrency}
        capped = drain(client, conn, f"bench_capped_{rnd}", args.jobs, args.concurrency, cap, False)
        keys.append(keyed / plain)
        typed.append(capped / plain)
        log(f"round {rnd + 1}: plain {plain:,.0f}/s, 1,000 keys {keyed:,.0f}/s, type cap {capped:,.0f}/s")
    print(f"N = {args.jobs:,}, concurrency {args.concurrency}, {args.rounds} rounds (medians of the ratios)")
    print(f"drain with a concurrency key per task (1,000 keys) / plain: {statistics.median(keys):.2f}")
    print(f"drain with a per-type concurrency of {args.concurrency} / plain: {statistics.median(typed):.2f}")
    conn.close()
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
