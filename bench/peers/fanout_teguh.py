"""teguh's fan-out/fan-in, for bench/fanout.py: parents that `ctx.map` their children and gather them.

    python -m bench.peers.fanout_teguh --url URL --parents 4 --children 1000 --concurrency 16

Installs teguh in the (fresh) database, then spawns the parents into a new
queue in one statement and runs one worker in this process (a
`teguh.testing.WorkerThread` of the given concurrency) until every parent has
completed. Each parent is a `ctx.map` of its children (one statement spawns
them all) followed by a check of the results, so the figure covers the batch
spawn, the children's runs, the one wake-up of each parent and its replay.
The worker's idle poll is 30 s: wake-ups come from LISTEN/NOTIFY.

Prints one JSON line: {"seconds": ..., "tasks": ...}, the time from the
parents' spawn to the last parent's completion.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import psycopg2

import teguh
from teguh import Client
from teguh.app import App
from teguh.testing import WorkerThread

QUEUE = "bench_fanout"


def one_round(dsn: str, parents: int, children: int, concurrency: int) -> float:
    """Run `parents` fan-outs of `children` each on a fresh queue; returns the seconds taken."""
    client = Client(dsn)
    client.create_queue(QUEUE)
    app = App(client=client, queue=QUEUE)

    @app.task("noop")
    def noop(params: Any) -> Any:
        return params

    @app.task("parent")
    def parent(params: Any, ctx: Any) -> Any:
        results = ctx.map("children", "noop", range(params["n"]))
        if results != list(range(params["n"])):
            raise AssertionError("results out of order")
        return len(results)

    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    handle = WorkerThread(app.worker(concurrency=concurrency, poll_interval=30))
    handle.start()
    try:
        start = time.monotonic()
        client.spawn_tasks(QUEUE, [{"task_name": "parent", "params": {"n": children}}] * parents)
        with conn.cursor() as cur:
            while True:
                cur.execute(
                    f"select count(*) from teguh.t_{QUEUE} where task_name = 'parent' and state = 'completed'"
                )
                if cur.fetchone()[0] == parents:
                    break
                time.sleep(0.01)
        took = time.monotonic() - start
        with conn.cursor() as cur:
            cur.execute(
                f"select count(*) from teguh.t_{QUEUE} "
                "where state = 'completed' and parent_task_id is not null"
            )
            done_children = cur.fetchone()[0]
    finally:
        handle.stop()
        handle.worker.client.close()
        conn.close()
        client.close()
    if done_children != parents * children:
        raise SystemExit(f"{done_children} children completed, expected {parents * children}")
    return took


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--parents", type=int, default=4)
    p.add_argument("--children", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--poll", type=float, default=0.05, help="unused: teguh wakes on LISTEN/NOTIFY")
    args = p.parse_args(argv)
    teguh.install(args.url)
    took = one_round(args.url, args.parents, args.children, args.concurrency)
    print(json.dumps({"seconds": took, "tasks": args.parents * (args.children + 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
