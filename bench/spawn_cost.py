"""What one spawn costs its PostgreSQL backend, by the statement that makes it.

    python bench/spawn_cost.py [-n 4000] [--rounds 3]

Each variant runs on its own connection to the benchmark's own PostgreSQL
(bench/_pg.py: Debian's 15 when present, synchronous commit on), one
statement per spawn, autocommit: spawns/s over the loop and the user+system
CPU of that connection's backend per spawn (from /proc/<pid>/stat, so the
commit's WAL flush is in it and the client's CPU is not). Variants are
interleaved round by round; medians are printed. The direct call of the
queue's `_spawn_<q>` is what no role may do (docs/roles.md): it shows what
the entry point costs. The batch line is a 1,000-item `spawn_tasks`, per item.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _pg
import psycopg2

import teguh

Q = "bench"

SINGLE = (
    ("spawn_task (table)", None, "select * from teguh.spawn_task(%s, %s, %s::jsonb, %s::jsonb)", True),
    (
        "spawn_plain (what Client.spawn_task calls)",
        None,
        "select teguh.spawn_plain(%s, %s, %s::jsonb)",
        False,
    ),
    (
        "spawn_task, server-side PREPARE",
        "prepare sp(text, text, jsonb, jsonb) as select * from teguh.spawn_task($1, $2, $3, $4)",
        "execute sp(%s, %s, %s::jsonb, %s::jsonb)",
        True,
    ),
    (f"_spawn_{Q} called directly", None, f"select teguh._spawn_{Q}(%s, %s::jsonb, '{{}}', 25, false)", None),
)


def backend_cpu(pid: int) -> float:
    return _pg.proc_times(pid)


def measure(dsn: str, setup: str | None, sql: str, args_of, n: int) -> tuple[float, float]:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        cur = conn.cursor()
        if setup:
            cur.execute(setup)
        cur.execute("select pg_backend_pid()")
        pid = cur.fetchone()[0]
        for i in range(min(200, n)):  # warm the session's caches
            cur.execute(sql, args_of(i))
            cur.fetchall()
        cpu0, t0 = backend_cpu(pid), time.perf_counter()
        for i in range(n):
            cur.execute(sql, args_of(i))
            cur.fetchall()
        seconds, cpu = time.perf_counter() - t0, backend_cpu(pid) - cpu0
        return n / seconds, cpu / n * 1e6
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=4000, help="spawns per variant and round (default 4000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    args = parser.parse_args()
    cluster = _pg.Cluster.start()
    try:
        cluster.create_database("spawn_cost")
        dsn = cluster.dsn("spawn_cost")
        teguh.install(dsn)
        with teguh.Client(dsn, max_connections=1) as client:
            client.create_queue(Q)
        results: dict[str, list[tuple[float, float]]] = {}
        batch_no = [0]

        def batch(_: int) -> tuple[str, str]:
            batch_no[0] += 1
            items = [{"task_name": "noop", "params": batch_no[0] * 1000 + k} for k in range(1000)]
            return (Q, json.dumps(items))

        for _ in range(args.rounds):
            for label, setup, sql, with_options in SINGLE:
                if with_options is None:
                    args_of = lambda i: ("noop", str(i))  # noqa: E731
                elif with_options:
                    args_of = lambda i: (Q, "noop", str(i), "{}")  # noqa: E731
                else:
                    args_of = lambda i: (Q, "noop", str(i))  # noqa: E731
                results.setdefault(label, []).append(measure(dsn, setup, sql, args_of, args.n))
            rate, cpu = measure(
                dsn, None, "select * from teguh.spawn_tasks(%s, %s::jsonb)", batch, max(10, args.n // 100)
            )
            results.setdefault("spawn_tasks, 1,000 items (per item)", []).append((rate * 1000, cpu / 1000))
        print(
            f"PostgreSQL {cluster.version}, {os.cpu_count()} CPUs, n = {args.n}, "
            f"{args.rounds} rounds (medians)"
        )
        print(f"| {'statement':45s} | spawns/s | backend CPU per spawn (µs) |")
        print(f"|{'-' * 47}|---------:|---------------------------:|")
        for label, rows in results.items():
            rate = statistics.median(r[0] for r in rows)
            cpu = statistics.median(r[1] for r in rows)
            print(f"| {label:45s} | {rate:8,.0f} | {cpu:26.1f} |")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
