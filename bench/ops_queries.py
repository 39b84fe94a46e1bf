"""How long the operator's reads take on a big queue: list_tasks, queue_stats, get_task.

    python bench/ops_queries.py                  # 1,000,000 finished + 100,000 pending tasks
    python bench/ops_queries.py --finished 200000 --pending 20000 --repeat 10

Builds queue `ops_bench` (dropped first) straight into its tables with
generate_series: finished tasks enqueued over the last 7 days (97 % completed,
2 % failed with their attempt history, 1 % cancelled; task names "email" 90 %,
"report" 9.9 %, "rare" 0.1 %), then pending ones enqueued over the last hour,
with their p_ rows, and a few running and sleeping ones. Then VACUUM ANALYZE
(what autovacuum does on a live database). Each call is timed `--repeat`
times through `teguh.Client` (so the round trip is included) and the median
and worst are printed, with the 50 ms budget of issue 14 (docs/benchmarks.md).
The database is TEGUH_DSN, else the embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg2

from teguh import Client

Q = "ops_bench"
BUDGET_MS = 50.0

# a UUIDv7 of ms since the epoch, unique per row number i (the id's random bits)
UUID_OF = (
    "(lpad(to_hex({ms}), 12, '0') || '7' || lpad(to_hex({i} %% 4096), 3, '0') || '8' "
    "|| lpad(to_hex({i}), 15, '0'))::uuid"
)

BUILD = """
insert into teguh.t_{q} (task_id, task_name, params, state, attempts, max_attempts, enqueued_at,
                         first_started_at, finished_at, result, failure_reason, cancelled_at, last_run_id)
select {uuid}, case when i %% 1000 = 0 then 'rare' when i %% 10 = 0 then 'report' else 'email' end,
       jsonb_build_object('n', i),
       case when i %% 100 < 97 then 'completed' when i %% 100 < 99 then 'failed' else 'cancelled' end,
       case when i %% 100 between 97 and 98 then 3 else 1 end, 3,
       ts, ts + interval '10 ms', ts + interval '1 s',
       case when i %% 100 < 97 then '{{"ok": true}}'::jsonb end,
       case when i %% 100 between 97 and 98 then '{{"type": "IOError", "message": "timeout"}}'::jsonb end,
       case when i %% 100 = 99 then ts + interval '1 s' end, {uuid}
  from (select i, now() - interval '7 days' - interval '1 hour' + i * (interval '7 days' / %(n)s) as ts,
               (extract(epoch from now() - interval '7 days' - interval '1 hour') * 1000)::bigint
                 + (i * (7 * 86400000.0 / %(n)s))::bigint as ms
          from generate_series(1, %(n)s) i) s
""".format(q=Q, uuid=UUID_OF.format(ms="ms", i="i"))

HISTORY = f"""
insert into teguh.a_{Q} (task_id, run_id, attempt, worker_id, started_at, ended_at, reason, final)
select t.task_id, gen_random_uuid(), a, 'bench-worker', t.first_started_at, t.finished_at,
       t.failure_reason, a = 3
  from teguh.t_{Q} t, generate_series(1, 3) a where t.state = 'failed'
"""

PENDING = """
with s as (
  select i, now() - interval '1 hour' + (i - %(first)s) * (interval '1 hour' / %(n)s) as ts,
         (extract(epoch from now() - interval '1 hour') * 1000)::bigint
           + ((i - %(first)s) * (3600000.0 / %(n)s))::bigint as ms
    from generate_series(%(first)s, %(first)s + %(n)s - 1) i
), t as (
  insert into teguh.t_{q} (task_id, task_name, params, state, attempts, enqueued_at)
  select {uuid}, 'email', jsonb_build_object('n', i), 'pending', 1, ts from s
  returning task_id, enqueued_at
)
insert into teguh.p_{q} (task_id, attempt, priority, available_at) select task_id, 1, 0, enqueued_at from t
""".format(q=Q, uuid=UUID_OF.format(ms="ms", i="i"))


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def build(client: Client, finished: int, pending: int) -> None:
    client.drop_queue(Q)
    client.create_queue(Q)
    conn = psycopg2.connect(client.dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            started = time.monotonic()
            cur.execute(BUILD, {"n": finished})
            cur.execute(HISTORY)
            cur.execute(PENDING, {"n": pending, "first": finished + 1})
            took = time.monotonic() - started
            log(f"built {finished:,} finished and {pending:,} pending tasks in {took:.0f} s")
        # a few running and sleeping tasks, through the engine
        for i in range(20):
            client.spawn_task(Q, "report", {"late": i}, priority=9)
        for run in client.claim_task(Q, "bench-worker", claim_timeout=3600, qty=20)[:10]:
            client.fail_run(Q, run.run_id, {"message": "again later"}, retry_at=client.database_time(3600))
        with conn.cursor() as cur:
            started = time.monotonic()
            for table in ("t_", "p_", "r_", "a_", "w_"):
                cur.execute(f"vacuum analyze teguh.{table}{Q}")
            log(f"vacuum analyze took {time.monotonic() - started:.0f} s")
    finally:
        conn.close()


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """Median and worst milliseconds of `repeat` calls (after one warm-up), and the last result."""
    result = fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times), result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--finished", type=int, default=1_000_000)
    parser.add_argument("--pending", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--no-build", action="store_true", help="time the queue built by an earlier run")
    args = parser.parse_args()

    with Client() as client:
        if not args.no_build:
            build(client, args.finished, args.pending)
        page = client.list_tasks(Q, limit=50)
        middle = client.list_tasks(Q, state="completed", limit=1000)[-1].task_id
        failed = client.list_tasks(Q, state="failed", limit=1)[0].task_id
        hour_ago = client.database_time(-3600)
        calls: list[tuple[str, Callable[[], Any]]] = [
            ("list_tasks()", lambda: client.list_tasks(Q)),
            ("list_tasks(after=page 1's last)", lambda: client.list_tasks(Q, after=page[-1].task_id)),
            ("list_tasks(after=an older id)", lambda: client.list_tasks(Q, after=middle)),
            ("list_tasks(state='pending')", lambda: client.list_tasks(Q, state="pending")),
            ("list_tasks(state='running')", lambda: client.list_tasks(Q, state="running")),
            ("list_tasks(state='sleeping')", lambda: client.list_tasks(Q, state="sleeping")),
            ("list_tasks(state='completed')", lambda: client.list_tasks(Q, state="completed")),
            ("list_tasks(state='failed')", lambda: client.list_tasks(Q, state="failed")),
            ("list_tasks(state='cancelled')", lambda: client.list_tasks(Q, state="cancelled")),
            ("list_tasks(task_name='rare')", lambda: client.list_tasks(Q, task_name="rare")),
            (
                "list_tasks(state='failed', task_name='rare')",
                lambda: client.list_tasks(Q, state="failed", task_name="rare"),
            ),
            ("list_tasks(since=an hour ago)", lambda: client.list_tasks(Q, since=hour_ago)),
            ("queue_stats()", lambda: client.queue_stats(Q)),
            ("get_task(a failed task)", lambda: client.get_task(Q, failed)),
        ]
        print(f"queue {Q}: {args.finished:,} finished + {args.pending:,} pending; {args.repeat} calls each")
        print(f"| call | median ms | worst ms | rows | under {BUDGET_MS:g} ms (median) |")
        print("|---|---:|---:|---:|---|")
        over = 0
        for name, fn in calls:
            median, worst, result = timed(fn, args.repeat)
            rows = len(result) if isinstance(result, list) else 1
            ok = median < BUDGET_MS
            over += not ok
            print(f"| `{name}` | {median:.1f} | {worst:.1f} | {rows} | {'yes' if ok else 'NO'} |")
        stats = client.queue_stats(Q)
        print(f"\nqueue_stats: {stats}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
