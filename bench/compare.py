"""teguh side by side with its peers (pgqueuer, procrastinate, absurd, DBOS), in one command.

    python bench/compare.py            # N = 20,000, concurrency 16, medians of 3 runs
    python bench/compare.py --quick    # N = 2,000, 1 run, short pgbench and memory runs
    python bench/compare.py --write    # also rewrite "## Side by side with peers" in docs/benchmarks.md
    python bench/compare.py --scenarios steps --write   # durable steps only: "## Durable steps"

Starts its own PostgreSQL (fsync and synchronous_commit on), measures the
pgbench limit (one insert + one delete by primary key per transaction), then
for each run and each peer, every scenario on a fresh database: single spawn,
batch spawn (n/a for a peer that has none), drain of a pre-filled queue (with
dead tuples, table sizes and the CPU split), wake-up latency of an idle worker,
and durable steps (pre-filled tasks of 3 no-op steps, for the peers that have
steps: teguh, absurd, DBOS; dead tuples per step).
Then, for teguh only, the drain with several worker processes and the worker's
memory over a long run. Workers run in subprocesses; every process started is
stopped by its pid.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _report, _snapshot, _workers, peers, scenarios
from bench._pg import Cluster

SCENARIOS = ("single", "batch", "drain", "wakeup", "steps")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help="N 2000, 1 run, 3 s pgbench, 50 wake-ups, memory at 2k and 10k (explicit options win)",
    )
    p.add_argument("-n", "--jobs", type=int, help="jobs per scenario (default 20000)")
    p.add_argument("--runs", type=int, help="runs per scenario; medians are reported (default 3)")
    p.add_argument("--concurrency", type=int, default=16, help="worker concurrency (default 16)")
    p.add_argument("--batch", type=int, default=1000, help="jobs per batch spawn call (default 1000)")
    p.add_argument("--peers", nargs="+", default=list(peers.ALL_PEERS), choices=peers.ALL_PEERS)
    p.add_argument(
        "--scenarios",
        nargs="+",
        default=list(SCENARIOS),
        choices=SCENARIOS,
        help="run only these scenarios (default: all)",
    )
    p.add_argument("--wakeup-samples", type=int, help="wake-up spawns measured (default 200)")
    p.add_argument("--wakeup-gap", type=float, default=0.02, help="seconds between wake-up spawns")
    p.add_argument("--pgbench-seconds", type=int, help="seconds per pgbench run (default 10)")
    p.add_argument("--pgbench-clients", type=int, nargs="*", default=[1, 4, 8])
    p.add_argument(
        "--processes",
        type=int,
        nargs="*",
        default=[2, 4],
        help="teguh drains with this many worker processes on one queue",
    )
    p.add_argument(
        "--memory",
        type=int,
        nargs="*",
        help="teguh worker RSS after this many processed tasks (default 10000 100000)",
    )
    p.add_argument("--million", action="store_true", help="also measure worker RSS after 1,000,000 tasks")
    p.add_argument(
        "--statements",
        action="store_true",
        help="diagnostic: preload pg_stat_statements and list each peer's statements per job "
        "during the drain",
    )
    p.add_argument("--server", choices=["auto", "debian15", "pgserver"], default="auto")
    p.add_argument("--write", action="store_true", help="rewrite the section in docs/benchmarks.md")
    p.add_argument("--keep-logs", action="store_true", help="keep the worker logs directory")
    p.add_argument("--teguh-ref", help="measure teguh/ as committed at this git revision (bench/ab.py)")
    p.add_argument("--json", type=Path, help="also write the raw results to this file (bench/ab.py)")
    args = p.parse_args(argv)
    quick = args.quick
    args.jobs = args.jobs or (2000 if quick else 20000)
    args.runs = args.runs or (1 if quick else 3)
    args.wakeup_samples = args.wakeup_samples or (50 if quick else 200)
    args.pgbench_seconds = args.pgbench_seconds or (3 if quick else 10)
    if args.memory is None:
        args.memory = [2000, 10000] if quick else [10000, 100000]
    if args.million:
        args.memory = sorted(set(args.memory) | {1_000_000})
    return args


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def attempt(errors: list[str], what: str, fn, *args, **kwargs):
    """Run one scenario; on failure note it and go on with the others."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # a broken peer must not lose the other results
        errors.append(f"{what}: {type(exc).__name__}: {exc}")
        log(f"FAILED {what}: {exc}\n{traceback.format_exc()}")
        return None


def run_peer(
    cluster: Cluster,
    peer,
    s: scenarios.Settings,
    which: list[str],
    results: dict,
    errors: list[str],
    run: int,
) -> None:
    out = results.setdefault(peer.name, {})
    tag = f"{peer.name} run {run}"
    which = [w for w in which if w in getattr(peer, "scenarios", SCENARIOS)]
    if not hasattr(peer, "spawn_steps"):
        which = [w for w in which if w != "steps"]

    for key, label, fn in (
        ("single", "single spawn", scenarios.single_spawn),
        ("batch", "batch spawn", scenarios.batch_spawn),
    ):
        if key in which:
            r = attempt(errors, f"{tag} {label}", fn, cluster, peer, s) or {}
            out.setdefault(f"{key}_spawn", []).append(r.get("rate"))
            if r.get("statements"):
                out.setdefault("statements", {})[label] = r["statements"]
            if key == "batch" and peer.spawn_batch is None:
                log(f"{tag}: {label} n/a ({peer.name} has no batch spawn)")
            else:
                log(f"{tag}: {label} {_r(r.get('rate'))} jobs/s")

    if "drain" in which:
        d = attempt(errors, f"{tag} drain", scenarios.drain, cluster, peer, s) or {}
        out.setdefault("drain", []).append(d.get("rate"))
        for key in (
            "cpu_worker", "cpu_pg", "cpu_worker_us", "cpu_pg_us", "cpu_us",
            "dead_pages_per_job", "dead_per_job", "size_mb", "leftover",
        ):
            out.setdefault(key, []).append(d.get(key))
        if d.get("statements"):
            out.setdefault("statements", {})["drain"] = d["statements"]
        if d:
            log(
                f"{tag}: drain {d['rate']:,.0f} jobs/s, "
                f"CPU worker {d['cpu_worker']:.0%} PG {d['cpu_pg']:.0%} (of all cores), "
                f"CPU per job worker {d['cpu_worker_us']:.0f} µs PG {d['cpu_pg_us']:.0f} µs, "
                f"dead tuples/job {_r(d['dead_pages_per_job'], '{:.2f}')} on the pages, "
                f"{d['dead_per_job']:.2f} per n_dead_tup, {d['size_mb']:.1f} MB"
            )

    if "steps" in which:
        d = attempt(errors, f"{tag} durable steps", scenarios.durable_steps, cluster, peer, s) or {}
        for key, field in (
            ("steps_rate", "rate"),
            ("steps_dead_pages", "dead_pages_per_step"),
            ("steps_dead", "dead_per_step"),
            ("steps_size_mb", "size_mb"),
            ("steps_cpu_worker", "cpu_worker"),
            ("steps_cpu_pg", "cpu_pg"),
            ("steps_cpu_us", "cpu_us"),
        ):
            out.setdefault(key, []).append(d.get(field))
        if d.get("statements"):
            out.setdefault("statements", {})["durable steps"] = d["statements"]
        if d:
            log(
                f"{tag}: durable steps {d['rate']:,.0f} tasks/s, "
                f"CPU worker {d['cpu_worker']:.0%} PG {d['cpu_pg']:.0%}, dead tuples/step "
                f"{_r(d['dead_pages_per_step'], '{:.2f}')} on the pages, "
                f"{d['dead_per_step']:.2f} per n_dead_tup"
            )

    if "wakeup" in which:
        w = attempt(errors, f"{tag} wake-up", scenarios.wakeup, cluster, peer, s) or {}
        out.setdefault("wake_median", []).append(w.get("median_ms"))
        out.setdefault("wake_p99", []).append(w.get("p99_ms"))
        if w:
            log(f"{tag}: wake-up median {w['median_ms']:.1f} ms, p99 {w['p99_ms']:.1f} ms")


def run_processes(
    cluster: Cluster, peer, s, counts: list[int], scaling: dict, errors: list, run: int
) -> None:
    """teguh's drain with several worker processes on one queue."""
    for procs in counts:
        what = f"teguh run {run} drain with {procs} processes"
        d = attempt(errors, what, scenarios.drain, cluster, peer, s, workers=procs) or {}
        scaling.setdefault(procs, []).append(d.get("rate"))
        log(f"teguh run {run}: drain with {procs} worker processes {_r(d.get('rate'))} jobs/s")


def _short(query: str, width: int = 110) -> str:
    query = query.replace("|", "\\|").replace("`", "'")
    return query if len(query) <= width else query[: width - 3] + "..."


def _r(value, spec: str = "{:,.0f}") -> str:
    return "n/a" if value is None else spec.format(value)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", "bench/compare.py", *argv])
    chosen = [peers.load(name) for name in args.peers]
    if steps_only(args):  # the job-queue peers without durable steps take no part
        chosen = [peer for peer in chosen if hasattr(peer, "spawn_steps")]
    absent = sorted({module for peer in chosen for module in peers.missing(peer)})
    if absent:
        print(
            f"missing: {', '.join(absent)}; install the peers with: pip install -e '.[bench]'",
            file=sys.stderr,
        )
        return 2
    log_dir = Path(tempfile.mkdtemp(prefix="teguh-bench-logs-"))
    teguh_revision = None
    if "teguh" in args.peers:
        if args.teguh_ref:
            root, teguh_revision = _snapshot.take_ref(log_dir, args.teguh_ref)
        else:
            root, teguh_revision = _snapshot.take(log_dir)
        _workers.import_root(root)
        log(f"teguh: measuring revision {teguh_revision} (a copy of teguh/ taken now)")
    s = scenarios.Settings(
        n=args.jobs,
        concurrency=args.concurrency,
        batch=args.batch,
        wakeup_samples=args.wakeup_samples,
        wakeup_warmup=10,
        wakeup_gap=args.wakeup_gap,
        log_dir=log_dir,
    )
    results: dict[str, dict[str, list]] = {}
    scaling: dict[int, list[float]] = {}
    memory_rows: list = []
    pgbench: dict[int, float] = {}
    errors: list[str] = []
    started = datetime.datetime.now()
    load_before = os.getloadavg()[0]

    # SIGTERM unwinds like Ctrl-C, so every `finally` stops what it started
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    cluster = Cluster.start(args.server, statements=args.statements)
    try:
        log(
            f"PostgreSQL {cluster.version}: {cluster.kind}, port {cluster.port}, postmaster pid {cluster.pid}"
        )
        pg_settings = cluster.settings()
        for clients in args.pgbench_clients:
            pgbench[clients] = cluster.pgbench_tps(clients, args.pgbench_seconds)
            log(f"pgbench, {clients} clients: {pgbench[clients]:,.0f} tps")
        for run in range(1, args.runs + 1):
            for peer in chosen:
                run_peer(cluster, peer, s, args.scenarios, results, errors, run)
                if peer.name == "teguh" and "drain" in args.scenarios:
                    scaling.setdefault(1, []).append(results["teguh"]["drain"][-1])
                    run_processes(cluster, peer, s, args.processes, scaling, errors, run)
        if "teguh" in args.peers and args.memory and "drain" in args.scenarios:
            log(f"teguh memory run to {max(args.memory):,} tasks")
            memory_rows = (
                attempt(
                    errors, "teguh memory", scenarios.memory, cluster, peers.load("teguh"), s, args.memory
                )
                or []
            )
    finally:
        cluster.stop()
    elapsed = datetime.datetime.now() - started

    text = render(
        args,
        command,
        cluster,
        pg_settings,
        chosen,
        results,
        pgbench,
        scaling,
        memory_rows,
        errors,
        started,
        elapsed,
        load_before,
        teguh_revision,
    )
    print(text)
    if args.json:
        args.json.write_text(
            json.dumps({"revision": teguh_revision, "results": results, "scaling": scaling, "errors": errors})
        )
    if args.write:
        _report.write_section(text, section=_report.STEPS_SECTION if steps_only(args) else _report.SECTION)
        log(f"wrote {_report.DOC}")
    if errors or args.keep_logs:
        log(f"worker logs kept in {log_dir}")
    else:
        shutil.rmtree(log_dir, ignore_errors=True)
    return 1 if errors else 0


def steps_only(args) -> bool:
    """Only the durable-steps scenario was asked for: the report is the "Durable steps" section."""
    return list(args.scenarios) == ["steps"]


def render(
    args,
    command,
    cluster,
    pg_settings,
    chosen,
    results,
    pgbench,
    scaling,
    memory_rows,
    errors,
    started,
    elapsed,
    load_before,
    teguh_revision,
) -> str:
    m = _report.machine()
    names = [p.name for p in chosen]
    queue_names = [n for n in names if any(k in results.get(n, {}) for k, *_ in _report.METRICS)]
    steps_names = [n for n in names if results.get(n, {}).get("steps_rate")]
    out = [
        _report.STEPS_SECTION if steps_only(args) else _report.SECTION,
        "",
        "One command starts its own PostgreSQL, measures what the machine allows (pgbench), and runs "
        "teguh and its peers through the same scenarios. Each scenario of each run gets a fresh database; "
        "the figures are medians over the runs, and the ratios are teguh's median over the peer's from "
        "the same invocation (above 1 is better for teguh on throughput, below 1 on latency, dead tuples "
        "and size).",
        "",
        "```sh",
        "pip install -e '.[bench]'   # pgqueuer[asyncpg], procrastinate, absurd-sdk, absurdctl, dbos",
        command,
        "```",
        "",
        f"{started:%Y-%m-%d %H:%M}, {m['cores']} cores ({m['cpu']}), {m['memory']}, Linux {m['kernel']}, "
        f"Python {m['python']}; PostgreSQL {cluster.version} ({cluster.kind}); the whole run took "
        f"{elapsed.total_seconds() / 60:.0f} min; load average {load_before:.2f} just before it started.",
        "",
        f"N = {args.jobs:,} {'tasks' if steps_only(args) else 'no-op jobs'}, worker concurrency "
        f"{args.concurrency}, medians of {args.runs} "
        f"run{'s' if args.runs > 1 else ''}"
        + (
            f"; teguh at revision {teguh_revision}, copied from the working tree at the start."
            if teguh_revision
            else "."
        ),
        "",
    ]
    if pgbench:
        out += [
            "### The limit: one insert and one delete by primary key per transaction",
            "",
            f"pgbench, {args.pgbench_seconds} s per row, `-j` = min(clients, cores), simple query protocol; "
            "the script is `BEGIN; INSERT ... RETURNING id \\gset; DELETE ... WHERE id = :id; END;`.",
            "",
            _report.pgbench_table(pgbench),
            "",
        ]
    if queue_names:
        out += ["### Results", "", _report.results_table(results, queue_names, args.jobs, args.batch), ""]
    if steps_names:
        out += [
            "### Durable steps" if queue_names else "### Results",
            "",
            f"Tasks of {scenarios.STEPS_PER_TASK} no-op steps (each step one checkpoint), "
            f"{args.jobs:,} pre-filled, one worker of concurrency {args.concurrency}; dead tuples "
            "per step are all the dead tuples the run left in the peer's tables (claiming and finishing "
            f"the task included) divided by {scenarios.STEPS_PER_TASK} x N.",
            "",
            _report.results_table(results, steps_names, args.jobs, args.batch, _report.STEPS_METRICS),
            "",
        ]
    if len(scaling) > 1:
        out += [
            "### teguh: worker processes on one queue",
            "",
            f"The drain above with 1, {', '.join(map(str, args.processes))} worker processes (each of "
            f"concurrency {args.concurrency}), medians of {args.runs}.",
            "",
            _report.scaling_table(scaling),
            "",
        ]
    if memory_rows:
        out += [
            "### teguh: worker memory over a long run",
            "",
            f"One worker (concurrency {args.concurrency}); the queue is fed {5000:,} tasks at a time while "
            "fewer than 20,000 wait, autovacuum on. RSS from /proc/<pid>/status; the rate column also "
            "shows whether draining slows down as completed tasks pile up in the queue's history.",
            "",
            _report.memory_table(memory_rows),
            "",
        ]
    if any(results[name].get("statements") for name in names):
        out += [
            "### Statements per job",
            "",
            "From pg_stat_statements (preloaded for this run only, `--statements`), last run, the "
            "harness's own queries excluded: calls per job and mean execution time in the server "
            "(array literals folded, so one statement sent with arrays of different lengths is one row).",
            "",
        ]
        for name in names:
            for scenario, rows in results[name].get("statements", {}).items():
                out += [
                    f"{name}, {scenario}:",
                    "",
                    "| calls per job | mean ms | statement |",
                    "|---:|---:|---|",
                ]
                out += [f"| {calls:.3f} | {mean:.3f} | `{_short(query)}` |" for calls, mean, query in rows]
                out.append("")
    out += ["### How it was measured", ""]
    out += [f"- {line}" for line in how_measured(args) if not steps_only(args) or line.startswith("durable")]
    out += [
        "",
        f"PostgreSQL settings: all defaults but {', '.join(cluster.changed)} (and the port and "
        "socket directory); as read from the server:",
        "",
    ]
    out += ["- " + ", ".join(f"`{k}` = {v}" for k, v in pg_settings.items())]
    out += ["", "Peers and their settings (their documented defaults except concurrency):", ""]
    for peer in chosen:
        revision = f", revision {teguh_revision}" if peer.name == "teguh" else ""
        out.append(f"- **{peer.version()}{revision}**")
        out += [f"  - {line}" for line in peer.settings(args.concurrency)]
        if peer.name in steps_names:
            out += [f"  - {line}" for line in peer.steps_settings()]
    if errors:
        out += ["", "Failures during this run:", ""] + [f"- {e}" for e in errors]
    return _report.wrap("\n".join(out))


def how_measured(args) -> list[str]:
    return [
        "single spawn: one thread, one connection already open, one call per job; jobs/s over the loop.",
        f"batch spawn: the same with {args.batch:,} jobs per call; n/a for a peer without batch spawn.",
        f"drain: {args.jobs:,} jobs spawned in batches (one at a time for a peer without batch spawn), "
        "then `CHECKPOINT`, then the worker process is "
        "started and set up, and released at t0; the end is the first poll (every 50 ms, down to 2 ms "
        "near the end) of the peer's count of finished jobs that sees all of them. jobs/s = N / (end - t0).",
        "dead tuples and size: autovacuum is off on every table of the peer "
        "(`alter table ... set (autovacuum_enabled = false)` after installing it); after the drain the "
        "worker is stopped, its backends gone, and `sum(n_dead_tup)` / N and "
        "`sum(pg_total_relation_size(relid))` are read from `pg_stat_user_tables` (they include the "
        "pre-fill). Dead tuples are also counted on the pages of those tables with pageinspect (which "
        "reads a page without pruning it): dead line pointers plus stored tuples whose deleter or "
        "updater committed, i.e. what VACUUM would have to remove. The two differ where pages are "
        "pruned during the drain: PostgreSQL clamps `n_dead_tup` at zero on every flush of a backend's "
        "counts, so a prune reported before the updates it removed is lost and the counter stays high.",
        "CPU split: user+system CPU seconds during the drain from /proc/<pid>/stat, for the worker process "
        "and for the whole cluster (postmaster, its live children, and the children it reaped, minus the "
        f"polling backend), divided by the drain's wall time x {os.cpu_count()} cores.",
        f"wake-up: an idle worker (1.5 s after start), {args.wakeup_samples} spawns "
        f"{args.wakeup_gap * 1000:.0f} ms apart after 10 unmeasured ones; latency = the handler's "
        "`time.time()` at start (written to a shared memory-mapped file) minus the `time.time()` just "
        "before the spawn call. p99 is nearest-rank.",
        f"durable steps: {args.jobs:,} tasks of {scenarios.STEPS_PER_TASK} steps spawned (1,000 per call "
        "where the peer has batch spawn), then `CHECKPOINT`, then one worker process started, set up and "
        "released at t0 (DBOS's `launch()` runs after t0, since launching starts dequeuing; it took "
        "0.07 s); the end is seen as in the drain; tasks/s = N / (end - t0). Autovacuum off; dead "
        "tuples counted on the pages and per `n_dead_tup` as in the drain, divided by the steps taken.",
    ]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
