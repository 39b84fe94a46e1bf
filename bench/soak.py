"""Soak test: steady load with periodic SIGKILLs, watched over time (not run in CI).

    python -m bench.soak --minutes 30

Starts its own PostgreSQL (see bench/_pg.py), a supervisor of worker
processes (the chaos tests' app, tests/chaos/chaos_app.py: 3-step tasks
whose every execution is recorded in a ledger), a spawner at a steady rate,
and SIGKILLs a random worker every `--kill-every` seconds. Every
`--sample-every` seconds it records table sizes, dead tuples, the backlog
and the workers' memory; at the end it prints the samples as a table and
checks the chaos invariants (no duplicate completion, no committed step run
twice). Terminal tasks older than a minute are cleaned up as it goes, as a
production deployment would.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "chaos"))

import harness  # noqa: E402  (tests/chaos/harness.py, shared with the chaos tests)

from bench._pg import Cluster, rss_kib  # noqa: E402

TABLES = ("t_jobs", "p_jobs", "r_jobs", "c_jobs")

COLUMNS = (
    ("min", 5),
    ("done", 8),
    ("done/s", 7),
    ("backlog", 8),
    ("running", 8),
    ("kills", 6),
    ("t_ MB", 7),
    ("p_ MB", 7),
    ("r_ MB", 7),
    ("c_ MB", 7),
    ("dead t_", 8),
    ("dead p_", 8),
    ("dead r_", 8),
    ("RSS max MB", 11),
    ("RSS sum MB", 11),
)


def sample(dsn: str, sup: harness.Supervisor, started: float, last: dict[str, Any]) -> dict[str, Any]:
    """One row of the table."""
    sizes = dict(
        harness.query(
            dsn,
            "select c.relname, pg_total_relation_size(c.oid) from pg_class c"
            " join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = 'teguh' and c.relname = any(%s)",
            list(TABLES),
        )
    )
    dead = dict(
        harness.query(
            dsn,
            "select relname, n_dead_tup from pg_stat_user_tables"
            " where schemaname = 'teguh' and relname = any(%s)",
            list(TABLES),
        )
    )
    done = harness.value(dsn, "select count(*) from completions")
    states = harness.states(dsn)
    rss = []
    for pid in sup.pids():
        with contextlib.suppress(OSError, RuntimeError):  # it just died
            rss.append(rss_kib(pid) / 1024)
    now = time.monotonic()
    row = {
        "min": round((now - started) / 60, 1),
        "done": done,
        "done/s": round((done - last.get("done", 0)) / max(now - last.get("at", started), 1e-9), 1),
        "backlog": states.get("pending", 0) + states.get("sleeping", 0),
        "running": states.get("running", 0),
        "kills": sup.kills,
        "t_ MB": round(sizes.get("t_jobs", 0) / 2**20, 2),
        "p_ MB": round(sizes.get("p_jobs", 0) / 2**20, 2),
        "r_ MB": round(sizes.get("r_jobs", 0) / 2**20, 2),
        "c_ MB": round(sizes.get("c_jobs", 0) / 2**20, 2),
        "dead t_": dead.get("t_jobs", 0),
        "dead p_": dead.get("p_jobs", 0),
        "dead r_": dead.get("r_jobs", 0),
        "RSS max MB": round(max(rss), 1) if rss else 0,
        "RSS sum MB": round(sum(rss), 1),
    }
    last.update(done=done, at=now)
    return row


def print_row(row: dict[str, Any]) -> None:
    print(" ".join(str(row[name]).rjust(width) for name, width in COLUMNS), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rate", type=float, default=20.0, help="tasks spawned per second")
    parser.add_argument("--step-seconds", type=float, default=0.05, help="work per step")
    parser.add_argument("--kill-every", type=float, default=10.0, help="seconds between SIGKILLs (0: none)")
    parser.add_argument("--sample-every", type=float, default=30.0)
    parser.add_argument("--claim-timeout", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--prefer", default="auto", help="PostgreSQL: auto, debian15 or pgserver (bench/_pg.py)"
    )
    args = parser.parse_args(argv)

    cluster = Cluster.start(prefer=args.prefer)
    sup = None
    try:
        dsn = cluster.dsn(cluster.create_database("soak"))
        harness.query(dsn, (REPO / "teguh" / "schema" / "teguh.sql").read_text())
        harness.install_ledger(dsn)
        log_dir = Path(tempfile.mkdtemp(prefix="teguh-soak-"))
        sup = harness.Supervisor(
            dsn,
            args.workers,
            {"claim_timeout": args.claim_timeout, "concurrency": args.concurrency, "poll_interval": 5},
            log_dir,
        ).start()
        stop = threading.Event()

        def spawner() -> None:
            owed = 0.0
            while not stop.wait(1.0):  # a steady cadence
                owed += args.rate
                n = int(owed)
                owed -= n
                if n:
                    harness.spawn_steps(dsn, n, seconds=args.step_seconds)

        threading.Thread(target=spawner, name="spawner", daemon=True).start()
        rng = random.Random(args.seed)
        started = time.monotonic()
        end = started + args.minutes * 60
        next_kill = started + args.kill_every if args.kill_every else float("inf")
        next_sample = started + args.sample_every
        rows: list[dict[str, Any]] = []
        last: dict[str, Any] = {}
        print(f"soak: {args.minutes} min, logs in {log_dir}", flush=True)
        print(" ".join(name.rjust(width) for name, width in COLUMNS), flush=True)
        while time.monotonic() < end:
            time.sleep(0.2)  # the soak's clock tick
            now = time.monotonic()
            if now >= next_kill:
                sup.kill_random(rng)
                next_kill += args.kill_every
            if now >= next_sample:
                harness.query(dsn, "select teguh.cleanup_tasks('jobs', 60, 100000)")
                rows.append(sample(dsn, sup, started, last))
                print_row(rows[-1])
                next_sample += args.sample_every
        stop.set()
        drain_deadline = time.monotonic() + 120
        while harness.not_terminal(dsn) and time.monotonic() < drain_deadline:
            time.sleep(0.5)  # polling the drain
        left = harness.not_terminal(dsn)
        violations = harness.invariants(dsn)
        print(f"\nafter the load stopped: {left} task(s) not terminal")
        print(f"kills {sup.kills}, restarts {sup.restarts}")
        print(f"invariants: {violations}")
        return 0 if not left and not any(violations.values()) else 1
    finally:
        if sup is not None:
            sup.stop(timeout=20)
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
