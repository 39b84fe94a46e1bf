"""DBOS's fan-out/fan-in, for bench/fanout.py: a workflow that enqueues child workflows and waits for them.

    python -m bench.peers.fanout_dbos --url URL --parents 4 --children 1000 --concurrency 16

Run in a process of its own (DBOS is a process-wide singleton) on a fresh
database that DBOS uses as its system database. Each parent workflow enqueues
its children on one DBOS queue (`worker_concurrency` = the concurrency given,
like teguh's worker slots) and then calls `handle.get_result()` on each, in
order. The parents are started with `DBOS.start_workflow` (not on the queue),
so a waiting parent holds a thread of its own, not one of the queue's slots.

Polling: a DBOS queue is read by a thread every `polling_interval_sec`
(default 1 s, which alone caps a queue at `worker_concurrency` dequeues per
poll); `get_result` polls its workflow's row every `polling_interval_sec` too
(default 1 s). Both are set to `--poll` (default 0.05 s, the value used in
the earlier comparisons), so the figure is not one of the defaults' sleeps.

Prints one JSON line: {"seconds": ..., "tasks": ...}, the time from the first
parent's start to the last parent's result.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from dbos import DBOS, DBOSConfig


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--parents", type=int, default=4)
    p.add_argument("--children", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--poll", type=float, default=0.05)
    args = p.parse_args(argv)
    logging.getLogger("dbos").setLevel(logging.WARNING)

    config: DBOSConfig = {
        "name": "fanout-bench",
        "system_database_url": args.url,
        "log_level": "WARNING",
        # the parents poll with get_result while the queue thread and the children run
        "sys_db_pool_size": max(20, args.parents + args.concurrency + 4),
    }
    DBOS(config=config)

    @DBOS.workflow()
    def child(i: int) -> int:
        return i

    @DBOS.workflow()
    def parent(n: int) -> int:
        queue = DBOS.retrieve_queue("children")
        handles = [queue.enqueue(child, i) for i in range(n)]
        results = [h.get_result(polling_interval_sec=args.poll) for h in handles]
        if results != list(range(n)):
            raise AssertionError("results out of order")
        return len(results)

    DBOS.launch()
    DBOS.register_queue("children", worker_concurrency=args.concurrency, polling_interval_sec=args.poll)
    try:
        start = time.monotonic()
        handles = [DBOS.start_workflow(parent, args.children) for _ in range(args.parents)]
        done = [h.get_result(polling_interval_sec=args.poll) for h in handles]
        took = time.monotonic() - start
    finally:
        DBOS.destroy()
    if done != [args.children] * args.parents:
        raise SystemExit(f"parents returned {done}")
    print(json.dumps({"seconds": took, "tasks": args.parents * (args.children + 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
