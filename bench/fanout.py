"""Fan-out/fan-in throughput: parents that each map 1,000 no-op children and gather them.

    python bench/fanout.py                      # 3 rounds of 4 parents x 1,000 children, concurrency 16
    python bench/fanout.py --parents 10 --children 1000 --rounds 5

Each round spawns the parents into a fresh queue (one statement), runs one
worker in this process (a `teguh.testing.WorkerThread`) until every parent
has completed, and reports tasks per second end to end: (parents + children)
over the time from the first spawn to the last parent's completion. Each
parent is a `ctx.map` of its children followed by a check of the results, so
the figure covers the batch spawn, the children's runs, the one wake-up of
each parent and its replay. The database is TEGUH_DSN, else the embedded
PostgreSQL. teguh only; peers are measured elsewhere (docs/benchmarks.md).
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
from teguh.app import App
from teguh.testing import WorkerThread


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def one_round(client: Client, conn: Any, queue: str, parents: int, children: int, concurrency: int) -> float:
    """Run `parents` fan-outs of `children` each on a fresh queue; returns tasks per second."""
    client.create_queue(queue)
    app = App(client=client, queue=queue)

    @app.task("noop")
    def noop(params: Any) -> Any:
        return params

    @app.task("parent")
    def parent(params: Any, ctx: Any) -> Any:
        results = ctx.map("children", "noop", range(params["n"]))
        if results != list(range(params["n"])):
            raise AssertionError("results out of order")
        return len(results)

    handle = WorkerThread(app.worker(concurrency=concurrency, poll_interval=30))
    handle.start()
    start = time.monotonic()
    client.spawn_tasks(queue, [{"task_name": "parent", "params": {"n": children}}] * parents)
    with conn.cursor() as cur:
        while True:
            cur.execute(
                f"select count(*) from teguh.t_{queue} where task_name = 'parent' and state = 'completed'"
            )
            if cur.fetchone()[0] == parents:
                break
            time.sleep(0.01)
    took = time.monotonic() - start
    with conn.cursor() as cur:
        cur.execute(
            f"select count(*) from teguh.t_{queue} where state = 'completed' and parent_task_id is not null"
        )
        done_children = cur.fetchone()[0]
    handle.stop()
    handle.worker.client.close()
    client.drop_queue(queue)
    if done_children != parents * children:
        raise SystemExit(f"{done_children} children completed, expected {parents * children}")
    return (parents + parents * children) / took


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parents", type=int, default=4)
    p.add_argument("--children", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=16)
    args = p.parse_args(argv)
    client = Client()
    client.install_schema()
    conn = psycopg2.connect(client.dsn)
    conn.autocommit = True
    rates = []
    for rnd in range(args.rounds):
        rate = one_round(client, conn, f"bench_fanout_{rnd}", args.parents, args.children, args.concurrency)
        rates.append(rate)
        log(f"round {rnd + 1}: {rate:,.0f} tasks/s")
    print(
        f"{args.parents} parents x {args.children:,} children, one worker of concurrency "
        f"{args.concurrency}, {args.rounds} rounds"
    )
    print(f"fan-out/fan-in, tasks per second end to end: median {statistics.median(rates):,.0f}")
    conn.close()
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
