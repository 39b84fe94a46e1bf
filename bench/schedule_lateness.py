"""How late schedule ticks fire from idle workers: 100 ticks of an every-second schedule.

    python bench/schedule_lateness.py              # 100 ticks, 2 idle workers (threads), one queue
    python bench/schedule_lateness.py --ticks 300 --workers 4

The workers sit in their idle wait (poll_interval 30 s, so no poll ends it):
only the earliest next tick bounds the wait (docs/schedules.md). For each
tick it reports the spawn lateness (the task's enqueued_at minus its
scheduled_for, both on the database clock) and the start lateness
(first_started_at minus scheduled_for: spawn, NOTIFY, claim). Prints the
median, p99 and max of each in milliseconds. The database is TEGUH_DSN, else
the embedded PostgreSQL; the first tick is left out (the workers were starting).
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

from teguh import App, Client
from teguh.testing import WorkerThread

QUEUE = "bench_sched"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ticks", type=int, default=100)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    client = Client()
    client.install_schema()
    if QUEUE in client.list_queues():
        client.drop_queue(QUEUE)
    client.create_queue(QUEUE)
    app = App(client=client, queue=QUEUE)

    @app.task("noop")
    def noop(params: Any) -> None:
        return None

    app.schedule("bench-every-second", "noop", every=1, catch_up="all")
    handles = [
        WorkerThread(app.worker(concurrency=4, poll_interval=30, install_signal_handlers=False)).start()
        for _ in range(args.workers)
    ]
    conn = psycopg2.connect(client.dsn)
    conn.autocommit = True
    query = (
        f"select extract(epoch from enqueued_at - (headers->>'scheduled_for')::timestamptz), "
        f"extract(epoch from first_started_at - (headers->>'scheduled_for')::timestamptz) "
        f"from teguh.t_{QUEUE} where headers->>'schedule' = 'bench-every-second' and state = 'completed' "
        f"order by headers->>'scheduled_for'"
    )
    log(f"waiting for {args.ticks + 1} ticks with {args.workers} idle worker(s)")
    with conn.cursor() as cur:
        while True:
            cur.execute(query)
            rows = cur.fetchall()
            if len(rows) > args.ticks:
                break
            time.sleep(1.0)  # a progress check, not synchronisation
    for handle in handles:
        handle.stop()
        handle.worker.client.close()
    client.delete_schedule("bench-every-second")
    client.drop_queue(QUEUE)
    conn.close()
    client.close()
    rows = rows[1 : args.ticks + 1]
    spawn = [float(r[0]) * 1000 for r in rows]
    start = [float(r[1]) * 1000 for r in rows]
    print(f"{len(rows)} ticks of an every-second schedule, {args.workers} idle worker(s), lateness in ms")
    for label, values in (("spawn (enqueued_at - tick)", spawn), ("start (first_started_at - tick)", start)):
        print(
            f"{label:32s} median {statistics.median(values):7.1f}  p99 {percentile(values, 0.99):7.1f}  "
            f"max {max(values):7.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
