"""Fan-out/fan-in throughput: teguh, DBOS and Celery's chord side by side, in one command.

    python bench/fanout.py                      # 3 rounds of 4 parents x 1,000 children, concurrency 16
    python bench/fanout.py --parents 10 --children 1000 --rounds 5
    python bench/fanout.py --peers teguh dbos   # leave Celery out

Starts its own PostgreSQL (bench/_pg.py: Debian's PostgreSQL 15 if present,
fsync and synchronous_commit on). Each round runs every peer once, in turn
(the rounds interleave the peers), each on a fresh database of the cluster
and in a subprocess of its own (bench/peers/fanout_<peer>.py):

- teguh: parents that `ctx.map` 1,000 no-op children and gather them, one
  worker of concurrency 16 in the runner's process;
- dbos: a workflow that enqueues 1,000 child workflows on a DBOS queue
  (worker_concurrency 16) and waits on each `handle.get_result()`; queue and
  result polling every `--poll` seconds (default 0.05 s);
- celery-redis: a chord (a group of 1,000 no-op tasks + a callback) per
  parent, on one worker of 16 threads, a local redis-server (Debian's
  `redis-server` package) as broker and result backend;
- celery-pg: the same chords with the PostgreSQL database as broker (kombu's
  SQLAlchemy transport, polling every `--poll` seconds) and result backend
  (Celery's database backend).

Reports tasks per second end to end, parents and children counted (a Celery
chord's callback stands for its parent), over the time from the parents'
start to the last parent's result: the median of the rounds per peer, and
its ratio to teguh's. Every process started is stopped by its pid.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._pg import Cluster  # noqa: E402 - after the sys.path line above

PEERS = ("teguh", "dbos", "celery-redis", "celery-pg")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_peer(cluster: Cluster, peer: str, rnd: int, args: argparse.Namespace) -> float:
    """One round of one peer on a fresh database; returns tasks per second."""
    db = cluster.create_database(f"bench_fanout_{peer.replace('-', '_')}_{rnd}")
    argv = [
        sys.executable,
        "-m",
        f"bench.peers.fanout_{peer.split('-')[0]}",
        "--url",
        cluster.url(db),
        "--parents",
        str(args.parents),
        "--children",
        str(args.children),
        "--concurrency",
        str(args.concurrency),
        "--poll",
        str(args.poll),
    ]
    if peer == "celery-redis":
        argv += ["--broker", "redis", "--redis-aof", args.redis_aof]
    elif peer == "celery-pg":
        argv += ["--broker", "sqla"]
    try:
        done = subprocess.run(
            argv, cwd=ROOT, capture_output=True, text=True, timeout=args.timeout, check=False
        )
    finally:
        cluster.drop_database(db)
    if done.returncode != 0:
        raise RuntimeError(f"{peer} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["tasks"] / result["seconds"]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parents", type=int, default=4)
    p.add_argument("--children", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--peers", nargs="+", default=list(PEERS), choices=PEERS)
    p.add_argument(
        "--poll",
        type=float,
        default=0.05,
        help="seconds between polls of DBOS's queue and results, and of kombu's SQLAlchemy transport",
    )
    p.add_argument(
        "--redis-aof",
        default="no",
        choices=("no", "always"),
        help="celery-redis: no append-only file (Redis's default), or one fsynced on every write",
    )
    p.add_argument("--timeout", type=float, default=900, help="seconds one round of one peer may take")
    args = p.parse_args(argv)

    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()[0]
    cluster = Cluster.start()
    rates: dict[str, list[float]] = {peer: [] for peer in args.peers}
    try:
        log(f"PostgreSQL {cluster.version}: {cluster.kind}")
        for rnd in range(args.rounds):
            for peer in args.peers:
                rate = run_peer(cluster, peer, rnd, args)
                rates[peer].append(rate)
                log(f"round {rnd + 1}, {peer}: {rate:,.0f} tasks/s")
    finally:
        cluster.stop()

    print(
        f"{started:%Y-%m-%d %H:%M} UTC, load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after, "
        f"{os.cpu_count()} cores; "
        f"PostgreSQL {cluster.version}; {args.parents} parents x {args.children:,} children, "
        f"concurrency {args.concurrency}, {args.rounds} interleaved rounds; polling {args.poll} s; "
        f"Redis append-only file: {args.redis_aof}"
    )
    print()
    print("| peer | tasks/s per round | median | vs teguh |")
    print("|---|---|---:|---:|")
    base = statistics.median(rates["teguh"]) if "teguh" in rates else None
    for peer, values in rates.items():
        median = statistics.median(values)
        ratio = f"{median / base:.2f}x" if base else "n/a"
        rounds = ", ".join(f"{v:,.0f}" for v in values)
        print(f"| {peer} | {rounds} | **{median:,.0f}** | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
