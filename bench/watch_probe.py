"""What the dashboard's watch probe costs a completion when no dashboard runs.

    python bench/watch_probe.py

The terminal transitions call `teguh._notify_watch(q)` once per call (one
primary-key probe of the empty `teguh.watched_queues`). This times that call
alone in a server-side loop, and one `complete_runs` call of one run through
the client for scale (the worst case: a worker's batch holds one run). On a
temporary database of TEGUH_DSN's server, else the embedded PostgreSQL.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg2

from teguh import Client
from teguh.testing import temporary_database


def main(n: int = 100_000, runs: int = 500) -> None:
    with temporary_database() as dsn, Client(dsn) as client:
        client.create_queue("bench")
        conn = psycopg2.connect(dsn)
        conn.autocommit = True
        cur = conn.cursor()

        def per_iteration(body: str) -> float:
            started = time.perf_counter()
            cur.execute(f"do $$ begin for i in 1..{n} loop {body} end loop; end $$")
            return (time.perf_counter() - started) / n * 1e6

        for _ in range(3):
            empty = per_iteration("perform 1;")
            probe = per_iteration("perform teguh._notify_watch('bench');")
            print(f"_notify_watch without a dashboard: {probe - empty:.2f} us per call")
        for _ in range(runs):
            client.spawn_task("bench", "t", {})
        claimed = client._claim_runs("bench", "w", 30, runs)
        started = time.perf_counter()
        for run in claimed:
            client._complete_runs("bench", [str(run["run_id"])], ["1"])
        per_run_us = (time.perf_counter() - started) / runs * 1e6
        print(f"complete_runs of one run, through the client: {per_run_us:.0f} us")
        conn.close()


if __name__ == "__main__":
    main()
