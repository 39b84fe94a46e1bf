"""The scenarios, each on a fresh database of its own.

Every function takes the cluster, a peer (see `bench/peers`) and the settings,
and returns plain numbers. Nothing here knows a peer's internals beyond what
its `Peer` class exposes.
"""

from __future__ import annotations

import itertools
import os
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from bench._pg import POLLER_ROLE, Cluster, proc_times, rss_kib
from bench._workers import Stamps, start_workers, stop_workers

_db_numbers = itertools.count(1)


@dataclass
class Settings:
    n: int
    concurrency: int
    batch: int
    wakeup_samples: int
    wakeup_warmup: int
    wakeup_gap: float
    log_dir: Path


# -- databases -------------------------------------------------------------------


class FreshDatabase:
    """A new database with the peer installed and autovacuum off on every table; dropped on exit."""

    def __init__(self, cluster: Cluster, peer, autovacuum: bool = False) -> None:
        self.cluster = cluster
        self.name = f"bench_{peer.name}_{next(_db_numbers)}"
        cluster.create_database(self.name)
        self.url = cluster.url(self.name)
        try:
            peer.install(self.url)
            if not autovacuum:
                self.disable_autovacuum()
        except BaseException:
            cluster.drop_database(self.name)
            raise

    def __enter__(self) -> FreshDatabase:
        return self

    def __exit__(self, *exc) -> None:
        self.cluster.drop_database(self.name)

    def connect(self):
        """A connection of the harness (its own role, so its statements are not counted as the peer's)."""
        conn = self.cluster.connect(self.name, user=POLLER_ROLE)
        conn.autocommit = True
        return conn

    def disable_autovacuum(self) -> None:
        conn = self.connect()
        try:
            cur = conn.cursor()
            cur.execute(
                "select format('alter table %I.%I set (autovacuum_enabled = false)', n.nspname, c.relname) "
                "from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                "where c.relkind = 'r' and n.nspname not in ('pg_catalog', 'information_schema') "
                "and n.nspname not like 'pg_toast%'"
            )
            for (statement,) in cur.fetchall():
                cur.execute(statement)
        finally:
            conn.close()


def scalar(conn, sql: str):
    cur = conn.cursor()
    cur.execute(sql)
    return cur.fetchone()[0]


def optional_scalar(conn, sql: str | None):
    """`scalar`, or None when there is no such query or it fails (say, a table was renamed)."""
    if sql is None:
        return None
    try:
        return scalar(conn, sql)
    except psycopg2.Error:
        return None


# -- spawning ----------------------------------------------------------------------


def single_spawn(cluster: Cluster, peer, s: Settings) -> dict:
    """Jobs per second spawned one call at a time from one thread."""
    with FreshDatabase(cluster, peer) as db, StatementWatch(cluster, db) as watch:
        rate = s.n / peer.spawn_single(db.url, s.n)
        return {"rate": rate, "statements": watch.read(s.n)}


def batch_spawn(cluster: Cluster, peer, s: Settings) -> dict:
    """Jobs per second spawned `s.batch` per call; an empty result (n/a) for a peer without batch spawn."""
    if peer.spawn_batch is None:
        return {}
    with FreshDatabase(cluster, peer) as db, StatementWatch(cluster, db) as watch:
        rate = s.n / peer.spawn_batch(db.url, s.n, s.batch)
        return {"rate": rate, "statements": watch.read(s.n)}


def prefill(peer, url: str, n: int, batch: int, first: int = 0) -> None:
    """Spawn jobs first..first+n-1: `batch` per call, or one at a time for a peer without batch spawn."""
    if peer.spawn_batch is None:
        peer.spawn_single(url, n, first)
    else:
        peer.spawn_batch(url, n, batch, first)


# -- draining ----------------------------------------------------------------------


STALL_SECONDS = 60.0
"""A drain that finishes no job for this long has failed."""


def wait_until_finished(conn, sql: str, n: int) -> float:
    """Poll the count of finished jobs; return the time.time() of the poll that first saw n.

    Polls every 50 ms, and faster (down to 2 ms) when the remaining jobs should
    take less than that at the rate seen so far, so the end is seen within a
    few ms without polling hard for the whole drain. Raises when no job
    finishes for STALL_SECONDS.
    """
    cur = conn.cursor()
    start = last_progress = time.time()
    last_done = -1
    while True:
        polled = time.time()
        cur.execute(sql)
        done = cur.fetchone()[0]
        if done >= n:
            return polled
        if done != last_done:
            last_done, last_progress = done, polled
        elif polled - last_progress > STALL_SECONDS:
            raise TimeoutError(
                f"stalled: {done} of {n} jobs finished, none in the last {STALL_SECONDS:.0f} s"
            )
        rate = done / max(polled - start, 1e-3)
        left = (n - done) / rate if rate > 0 else 1.0
        time.sleep(min(0.05, max(0.002, left / 4)))


def wait_for_no_other_backends(conn, timeout: float = 15.0) -> None:
    """Wait until only this connection is left on its database (the workers' stats are flushed then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        others = scalar(
            conn,
            "select count(*) from pg_stat_activity "
            "where datname = current_database() and pid <> pg_backend_pid()",
        )
        if others == 0:
            return
        time.sleep(0.05)


# What VACUUM would have to remove, read off the pages (pageinspect reads them
# without pruning): line pointers left dead by a prune, plus tuples still stored
# whose deleter or updater committed (lock-only xmax and aborted ones aside).
# 0x0800 xmax invalid, 0x0080 lock only, 0x1000 multi, 0x0050 lock mask,
# 0x0040 exclusive lock, 0x0300 xmin frozen/invalid bits.
DEAD_ON_PAGES_SQL = """
select count(*) filter (where i.lp_flags = 3)
     + count(*) filter (where i.lp_flags = 1 and (
         (i.t_infomask & 768) = 512
         or (i.t_xmax <> '0'
             and (i.t_infomask & 2048) = 0
             and (i.t_infomask & 128) = 0
             and (i.t_infomask & 4176) <> 64
             and ((i.t_infomask & 4096) <> 0 or pg_xact_status(i.t_xmax::text::xid8) = 'committed'))))
  from generate_series(0, pg_relation_size(%(rel)s::regclass) / current_setting('block_size')::int - 1) blk,
       heap_page_items(get_raw_page(%(rel)s, blk::int)) i
"""


def dead_on_pages(conn, relids: list[int]) -> int | None:
    """Dead tuples counted on the tables' pages (None without pageinspect).

    `n_dead_tup` is a counter: updates add to it when they commit and prunes
    subtract when their backend flushes, and PostgreSQL clamps it at zero on
    every flush. A prune flushed before the updates it undid (the poller's
    scans prune pages a second before the worker's backends report) is lost,
    so the counter overstates what is left for tables pruned during the drain.
    The bench cluster is fresh, so a 32-bit xid is its own xid8.
    """
    cur = conn.cursor()
    try:
        cur.execute("create extension if not exists pageinspect")
        conn.commit()
    except psycopg2.Error:
        conn.rollback()
        return None
    total = 0
    for relid in relids:
        cur.execute("select %s::regclass::text", (relid,))
        rel = cur.fetchone()[0]
        cur.execute(DEAD_ON_PAGES_SQL, {"rel": rel})
        total += cur.fetchone()[0] or 0
    conn.commit()
    return total


def table_stats(conn) -> tuple[int, int | None, int]:
    """Dead tuples (statistics, then counted on the pages) and total size of every user table.

    Statistics reach the shared counters up to a second late: the poller's own
    pending counts (its scans prune pages) are flushed first, and the snapshot
    is cleared, so every peer is read the same settled way.
    """
    cur = conn.cursor()
    if conn.server_version >= 150000:
        cur.execute("select pg_stat_force_next_flush()")
        conn.commit()
    cur.execute("select pg_stat_clear_snapshot()")
    cur.execute(
        "select relname, n_dead_tup, n_tup_upd, n_tup_hot_upd, pg_total_relation_size(relid), relid "
        "from pg_stat_user_tables order by relname"
    )
    rows = cur.fetchall()
    conn.commit()
    dead = sum(r[1] for r in rows)
    size = sum(r[4] for r in rows)
    busy = [r[:4] for r in rows if r[1]]
    if busy:
        print("    dead tuples by table (name, dead, updates, HOT):", busy, file=sys.stderr, flush=True)
    on_pages = dead_on_pages(conn, [r[5] for r in rows])
    return int(dead), on_pages, int(size)


class StatementWatch:
    """The peer's statements from now on, when the cluster preloads pg_stat_statements (`--statements`)."""

    def __init__(self, cluster: Cluster, db: FreshDatabase) -> None:
        self.on = cluster.statements
        self.conn = db.connect() if self.on else None
        if self.on:
            self.conn.cursor().execute("create extension if not exists pg_stat_statements")
            self.reset()

    def reset(self) -> None:
        if self.on:
            self.conn.cursor().execute("select pg_stat_statements_reset()")

    def read(self, n: int) -> list | None:
        return top_statements(self.conn, n) if self.on else None

    def __enter__(self) -> StatementWatch:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def top_statements(conn, n: int, limit: int = 8) -> list[tuple[float, float, str]]:
    """The peer's statements since the last reset: (calls per job, mean ms, query), most called first.

    Array literals are folded (`ARRAY[...]`), so a statement sent with arrays
    of different lengths counts as one. The first row is the total.
    """
    cur = conn.cursor()
    cur.execute(
        "select s.calls, s.total_exec_time, s.query from pg_stat_statements s "
        "join pg_database d on d.oid = s.dbid join pg_roles r on r.oid = s.userid "
        "where d.datname = current_database() and r.rolname <> %s"
        # with pg_stat_statements.track = all (bench/scale.py --nested) only what the client sent
        " and s.toplevel",
        (POLLER_ROLE,),
    )
    merged: dict[str, list[float]] = {}
    for calls, total_ms, query in cur.fetchall():
        key = re.sub(r"ARRAY\[[^\]]*\]", "ARRAY[...]", " ".join(query.split()))
        entry = merged.setdefault(key, [0, 0.0])
        entry[0] += calls
        entry[1] += total_ms
    ordered = sorted(merged.items(), key=lambda item: -item[1][0])
    calls = sum(c for c, _ in merged.values())
    total_ms = sum(t for _, t in merged.values())
    rows = [(calls / n, total_ms / max(calls, 1), "(all statements)")]
    rows += [(c / n, t / c, query) for query, (c, t) in ordered[:limit]]
    return rows


def drain(cluster: Cluster, peer, s: Settings, workers: int = 1, observer=None) -> dict[str, float]:
    """Pre-fill n jobs, start the worker(s) at once, time until the database counts n finished.

    `observer` (optional, see bench/scale.py) is told the database before the
    workers start (`open(db)`, which returns the pids of its own backends, left
    out of PostgreSQL's CPU like the poller's), `start()` just before t0 and
    `stop()` just after the end is seen; its `results()` are merged into the
    returned dict.
    """
    nproc = os.cpu_count() or 1
    with FreshDatabase(cluster, peer) as db:
        prefill(peer, db.url, s.n, s.batch)
        cluster.admin("checkpoint")
        poller = db.connect()
        watch = StatementWatch(cluster, db)
        procs = []
        try:
            poller_pid = scalar(poller, "select pg_backend_pid()")
            harness_pids = [poller_pid, *(observer.open(db) if observer is not None else [])]
            args = peer.worker_args(db.url, s.concurrency, None)
            procs = start_workers(peer.module, args, workers, s.log_dir)
            cpu_w0 = sum(proc_times(p.pid) for p in procs)
            cpu_pg0 = cluster.cpu_seconds() - sum(proc_times(pid) for pid in harness_pids)
            watch.reset()
            if observer is not None:
                observer.start()
            t0 = time.time()
            for p in procs:
                p.go()
            t1 = wait_until_finished(poller, peer.finished_sql(s.n), s.n)
            cpu_w1 = sum(proc_times(p.pid) for p in procs)
            cpu_pg1 = cluster.cpu_seconds() - sum(proc_times(pid) for pid in harness_pids)
            if observer is not None:
                observer.stop()
            statements = watch.read(s.n)
            died = [p for p in procs if p.proc.poll() is not None]
            if died:
                raise RuntimeError(
                    f"{len(died)} of {workers} workers exited during the drain; see {died[0].log_path}"
                )
            stop_workers(procs)
            procs = []
            wait_for_no_other_backends(poller)
            dead, dead_pages, size = table_stats(poller)
            leftover = optional_scalar(poller, peer.leftover_sql())
        finally:
            stop_workers(procs)
            if observer is not None:
                observer.close()
            watch.close()
            poller.close()
    wall = t1 - t0
    return {
        **(observer.results() if observer is not None else {}),
        "rate": s.n / wall,
        "cpu_worker": (cpu_w1 - cpu_w0) / (wall * nproc),
        "cpu_pg": (cpu_pg1 - cpu_pg0) / (wall * nproc),
        # CPU time per job does not depend on how busy the rest of the machine is, unlike a rate
        "cpu_worker_us": (cpu_w1 - cpu_w0) / s.n * 1e6,
        "cpu_pg_us": (cpu_pg1 - cpu_pg0) / s.n * 1e6,
        "cpu_us": (cpu_w1 - cpu_w0 + cpu_pg1 - cpu_pg0) / s.n * 1e6,
        "dead_per_job": dead / s.n,
        "dead_pages_per_job": None if dead_pages is None else dead_pages / s.n,
        "size_mb": size / 1e6,
        "leftover": leftover,
        "statements": statements,
    }


# -- durable steps ------------------------------------------------------------------


STEPS_PER_TASK = 3
"""Steps of each durable-steps task (the peers' runners define tasks of this many no-op steps)."""


def durable_steps(cluster: Cluster, peer, s: Settings) -> dict[str, float]:
    """Pre-fill n tasks of 3 no-op steps each, start one worker, time until the database counts n finished.

    As `drain`, with the peer's durable-steps task (`peer.spawn_steps`,
    `peer.steps_worker_args`); dead tuples are counted on the pages after the
    drain and divided by the steps taken (n x 3), so they include the per-task
    cost of claiming and finishing, spread over its steps.
    """
    nproc = os.cpu_count() or 1
    with FreshDatabase(cluster, peer) as db:
        peer.spawn_steps(db.url, s.n)
        cluster.admin("checkpoint")
        poller = db.connect()
        watch = StatementWatch(cluster, db)
        procs = []
        try:
            poller_pid = scalar(poller, "select pg_backend_pid()")
            procs = start_workers(peer.module, peer.steps_worker_args(db.url, s.concurrency), 1, s.log_dir)
            cpu_w0 = proc_times(procs[0].pid)
            cpu_pg0 = cluster.cpu_seconds() - proc_times(poller_pid)
            watch.reset()
            t0 = time.time()
            procs[0].go()
            t1 = wait_until_finished(poller, peer.finished_sql(s.n), s.n)
            cpu_w1 = proc_times(procs[0].pid)
            cpu_pg1 = cluster.cpu_seconds() - proc_times(poller_pid)
            statements = watch.read(s.n)
            if procs[0].proc.poll() is not None:
                raise RuntimeError(f"the worker exited during the run; see {procs[0].log_path}")
            stop_workers(procs)
            procs = []
            wait_for_no_other_backends(poller)
            dead, dead_pages, size = table_stats(poller)
        finally:
            stop_workers(procs)
            watch.close()
            poller.close()
    wall = t1 - t0
    steps = s.n * STEPS_PER_TASK
    return {
        "rate": s.n / wall,
        "cpu_worker": (cpu_w1 - cpu_w0) / (wall * nproc),
        "cpu_pg": (cpu_pg1 - cpu_pg0) / (wall * nproc),
        "cpu_us": (cpu_w1 - cpu_w0 + cpu_pg1 - cpu_pg0) / s.n * 1e6,
        "dead_per_step": dead / steps,
        "dead_pages_per_step": None if dead_pages is None else dead_pages / steps,
        "size_mb": size / 1e6,
        "statements": statements,
    }


# -- wake-up -------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def wakeup(cluster: Cluster, peer, s: Settings) -> dict[str, float]:
    """Spawn one job every `wakeup_gap` s to an idle worker; latency from spawn call to handler start."""
    count = s.wakeup_warmup + s.wakeup_samples
    stamps_path = s.log_dir / f"stamps-{peer.name}.bin"
    stamps = Stamps(stamps_path, count)
    with FreshDatabase(cluster, peer) as db:
        procs = []
        try:
            procs = start_workers(
                peer.module, peer.worker_args(db.url, s.concurrency, str(stamps_path)), 1, s.log_dir
            )
            procs[0].go()
            time.sleep(1.5)  # let it reach its idle wait
            spawned = peer.spawn_paced(db.url, count, s.wakeup_gap)
            deadline = time.monotonic() + 30
            while 0.0 in stamps.read() and time.monotonic() < deadline:
                time.sleep(0.05)
            started = stamps.read()
        finally:
            stop_workers(procs)
            stamps.close()
            stamps_path.unlink(missing_ok=True)
    pairs = list(zip(spawned, started, strict=True))[s.wakeup_warmup :]
    missing = sum(1 for _, t in pairs if t == 0.0)
    if missing:
        raise RuntimeError(f"{missing} of {len(pairs)} wake-up jobs never started")
    latencies = [(t - spawn) * 1000 for spawn, t in pairs]
    return {"median_ms": statistics.median(latencies), "p99_ms": percentile(latencies, 99)}


# -- memory over a long run (teguh) ----------------------------------------------------


def memory(
    cluster: Cluster, peer, s: Settings, checkpoints: list[int], feed: int = 5000, backlog: int = 20000
) -> list[dict[str, float]]:
    """Worker RSS after each checkpoint of processed tasks, feeding the queue in batches.

    Autovacuum stays on here (this is a long run, as in production). Also
    gives the drain rate between checkpoints, which shows whether claiming
    slows down as the queue's history of completed tasks grows.
    """
    rows = []
    with FreshDatabase(cluster, peer, autovacuum=True) as db:
        poller = db.connect()
        procs = []
        try:
            procs = start_workers(peer.module, peer.worker_args(db.url, s.concurrency, None), 1, s.log_dir)
            pid = procs[0].pid
            procs[0].go()
            spawned = 0
            last_done, last_t = 0, time.time()
            total = max(checkpoints)
            for checkpoint in sorted(checkpoints):
                seen, seen_at = -1, time.time()
                while True:
                    done = _processed(poller, peer, spawned, total)
                    if done >= checkpoint:
                        break
                    if done != seen:
                        seen, seen_at = done, time.time()
                    elif time.time() - seen_at > STALL_SECONDS:
                        raise TimeoutError(f"stalled at {done:,} processed tasks")
                    if spawned - done < backlog and spawned < total:
                        take = min(feed, total - spawned)
                        prefill(peer, db.url, take, s.batch, first=spawned)
                        spawned += take
                    else:
                        time.sleep(0.2)
                now = time.time()
                rows.append(
                    {
                        "target": checkpoint,
                        "processed": done,
                        "rss_mib": rss_kib(pid) / 1024,
                        "rate": (done - last_done) / (now - last_t),
                    }
                )
                last_done, last_t = done, now
        finally:
            stop_workers(procs)
            poller.close()
    return rows


def _processed(conn, peer, spawned: int, total: int) -> int:
    """Tasks finished so far: spawned minus those still queued or leased when the peer can tell
    (cheap at any history size), else its count of finished jobs (a scan of the history)."""
    outstanding = optional_scalar(conn, peer.leftover_sql())
    if outstanding is not None:
        return spawned - outstanding
    return scalar(conn, peer.finished_sql(total))
