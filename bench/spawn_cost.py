"""What one spawn costs PostgreSQL, by the statement that makes it, and against pgqueuer.

    python bench/spawn_cost.py [-n 4000] [--rounds 3]

On the benchmark's own PostgreSQL (bench/_pg.py: Debian's 15 when present,
synchronous commit on), one spawn per autocommit statement, variants
interleaved round by round, medians printed:

- teguh's entry points, each on its own psycopg2 connection: spawns/s and
  the user+system CPU of that connection's backend per spawn (from
  /proc/<pid>/stat: the commit's WAL flush is in it, the client's CPU is
  not). The direct call of the queue's `_spawn_<q>` is what no role may do
  (docs/roles.md): it shows what the entry point costs.
- a 1,000-item `spawn_tasks`, per item.
- teguh and pgqueuer as `bench/compare.py` spawns (`Client.spawn_task`, and
  pgqueuer's `Queries.enqueue` over asyncpg): spawns/s, the client process's
  CPU per spawn and the CPU of all PostgreSQL processes per spawn (one
  harness for both, so the two sides compare).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg2

import teguh
from bench import peers
from bench._pg import Cluster, proc_times

Q = "bench"

Args = Callable[[int], tuple[Any, ...]]

ENTRY_POINTS: tuple[tuple[str, str | None, str, Args], ...] = (
    (
        "spawn_task (table)",
        None,
        "select * from teguh.spawn_task(%s, %s, %s::jsonb, %s::jsonb)",
        lambda i: (Q, "noop", str(i), "{}"),
    ),
    (
        "spawn_plain (what Client.spawn_task calls)",
        None,
        "select teguh.spawn_plain(%s, %s, %s::jsonb)",
        lambda i: (Q, "noop", str(i)),
    ),
    (
        "spawn_task, server-side PREPARE",
        "prepare sp(text, text, jsonb, jsonb) as select * from teguh.spawn_task($1, $2, $3, $4)",
        "execute sp(%s, %s, %s::jsonb, %s::jsonb)",
        lambda i: (Q, "noop", str(i), "{}"),
    ),
    (
        f"_spawn_{Q} called directly",
        None,
        f"select teguh._spawn_{Q}(%s, %s::jsonb, '{{}}', 25, false)",
        lambda i: ("noop", str(i)),
    ),
)


def statement_cost(dsn: str, setup: str | None, sql: str, args_of: Args, n: int) -> tuple[float, float]:
    """(statements/s, backend CPU µs per statement) of n statements on a new connection."""
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
        cpu0, t0 = proc_times(pid), time.perf_counter()
        for i in range(n):
            cur.execute(sql, args_of(i))
            cur.fetchall()
        return n / (time.perf_counter() - t0), (proc_times(pid) - cpu0) / n * 1e6
    finally:
        conn.close()


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peer_cost(cluster: Cluster, name: str, dbname: str, n: int) -> tuple[float, float, float]:
    """(spawns/s, client CPU µs, PostgreSQL CPU µs) per single spawn through a peer's own client."""
    cluster.create_database(dbname)
    dsn = cluster.url(dbname)
    peer = peers.load(name)
    peer.install(dsn)
    peer.spawn_single(dsn, 200, 0)  # warm up, as compare.py's runs are not
    client0, server0 = own_cpu(), cluster.cpu_seconds()
    seconds = peer.spawn_single(dsn, n, 1000)
    client, server = own_cpu() - client0, cluster.cpu_seconds() - server0
    cluster.drop_database(dbname)
    return n / seconds, client / n * 1e6, server / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=4000, help="spawns per variant and round (default 4000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    args = parser.parse_args()
    cluster = Cluster.start()
    try:
        cluster.create_database("spawn_cost")
        dsn = cluster.dsn("spawn_cost")
        teguh.install(dsn)
        with teguh.Client(dsn, max_connections=1) as client:
            client.create_queue(Q)
        entry: dict[str, list[tuple[float, float]]] = {}
        versus: dict[str, list[tuple[float, float, float]]] = {}
        batches = iter(range(1, 1 << 30))

        def batch(_: int) -> tuple[str, str]:
            first = next(batches) * 1000
            return (Q, json.dumps([{"task_name": "noop", "params": first + k} for k in range(1000)]))

        for r in range(args.rounds):
            for label, setup, sql, args_of in ENTRY_POINTS:
                entry.setdefault(label, []).append(statement_cost(dsn, setup, sql, args_of, args.n))
            n_batches = max(10, args.n // 100)
            rate, cpu = statement_cost(
                dsn, None, "select * from teguh.spawn_tasks(%s, %s::jsonb)", batch, n_batches
            )
            entry.setdefault("spawn_tasks, 1,000 items (per item)", []).append((rate * 1000, cpu / 1000))
            for name in ("teguh", "pgqueuer"):
                versus.setdefault(name, []).append(peer_cost(cluster, name, f"vs_{name}_{r}", args.n))
        cpus = os.cpu_count()
        print(f"PostgreSQL {cluster.version}, {cpus} CPUs, n = {args.n}, {args.rounds} rounds (medians)")
        print()
        print("| statement | spawns/s | backend CPU per spawn (µs) |")
        print("|---|---:|---:|")
        for label, rows in entry.items():
            rate, cpu = (statistics.median(col) for col in zip(*rows, strict=True))
            print(f"| {label} | {rate:,.0f} | {cpu:.1f} |")
        print()
        print("| single spawn through the peer's client | spawns/s | client CPU (µs) | PostgreSQL CPU (µs) |")
        print("|---|---:|---:|---:|")
        for name, rows in versus.items():
            rate, client_us, server_us = (statistics.median(col) for col in zip(*rows, strict=True))
            print(f"| {name} | {rate:,.0f} | {client_us:.0f} | {server_us:.0f} |")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
