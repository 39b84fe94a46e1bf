"""teguh against an earlier revision of itself, interleaved, in one command.

    python bench/ab.py --base f7623bc              # N = 10,000, 3 interleaved pairs
    python bench/ab.py --base main~5 --runs 5 --write

A refactor or a new feature must not cost anything measurable when it is not
used. Single runs of `bench/compare.py` move by 10-20 % between invocations on
a shared machine, so comparing today's run with a figure recorded last week
proves little. This script measures both revisions in alternation (base, head,
then head, base, ...), each run on a fresh PostgreSQL started by
`bench/compare.py --peers teguh --runs 1`, and reports medians and their ratio.
The base is `teguh/` exported from git at `--base`; the head is the working
tree, copied when each of its runs starts, or `--head REV` exported from git.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _report

REPO = Path(__file__).resolve().parent.parent
SECTION = "## Before and after a change"

# key in compare.py's results, label, better when higher
METRICS = (
    ("single_spawn", "single spawn, jobs/s", True),
    ("batch_spawn", "batch spawn, jobs/s", True),
    ("drain", "drain, jobs/s", True),
    ("cpu_worker", "worker CPU during the drain, share of all cores", False),
    ("cpu_pg", "PostgreSQL CPU during the drain, share of all cores", False),
    ("cpu_worker_us", "worker CPU per job, µs", False),
    ("cpu_pg_us", "PostgreSQL CPU per job, µs", False),
    ("dead_pages_per_job", "dead tuples per job (pages)", False),
    ("wake_median", "wake-up median, ms", False),
    ("wake_p99", "wake-up p99, ms", False),
    ("steps_rate", "durable 3-step tasks, tasks/s", True),
    ("steps_dead_pages", "dead tuples per step (pages)", False),
    ("steps_cpu_us", "CPU per 3-step task (worker + PostgreSQL), µs", False),
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="git revision to compare against (e.g. a commit or main~3)")
    p.add_argument("--head", help="git revision to measure as the head (default: the working tree)")
    p.add_argument("--runs", type=int, default=3, help="pairs of runs; medians are reported (default 3)")
    p.add_argument("-n", "--jobs", type=int, default=10000, help="jobs per scenario (default 10000)")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--wakeup-samples", type=int, default=200)
    p.add_argument("--server", choices=["auto", "debian15", "pgserver"], default="auto")
    p.add_argument(
        "--scenarios",
        nargs="+",
        choices=["single", "batch", "drain", "wakeup", "steps"],
        help="run only these scenarios (default: all)",
    )
    p.add_argument("--write", action="store_true", help=f"rewrite '{SECTION}' in docs/benchmarks.md")
    return p.parse_args(argv)


def one_run(args: argparse.Namespace, ref: str | None, out: Path, label: str) -> dict:
    cmd = [
        sys.executable,
        str(REPO / "bench" / "compare.py"),
        "--peers",
        "teguh",
        "--runs",
        "1",
        "-n",
        str(args.jobs),
        "--concurrency",
        str(args.concurrency),
        "--wakeup-samples",
        str(args.wakeup_samples),
        "--server",
        args.server,
        "--pgbench-clients",
        "--processes",
        "--memory",
        "--json",
        str(out),
    ]
    if args.scenarios:
        cmd += ["--scenarios", *args.scenarios]
    if ref:
        cmd += ["--teguh-ref", ref]
    now = f"{datetime.datetime.now():%H:%M:%S}"
    print(f"[{now}] {label} {ref or 'working tree'}", file=sys.stderr, flush=True)
    subprocess.run(cmd, cwd=REPO, check=False, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def render(args, command: str, base_rev: str, head_rev: str, base: dict, head: dict, started, minutes) -> str:
    m = _report.machine()
    out = [
        SECTION,
        "",
        "The same scenarios as the table above, for two revisions of teguh measured in alternation in one "
        "invocation (each run on a fresh PostgreSQL), so that machine noise hits both alike. A ratio is "
        "head over base; the last column says whether the difference is larger than the spread of the "
        "base's own runs.",
        "",
        "```sh",
        command,
        "```",
        "",
        f"{started:%Y-%m-%d %H:%M}, {m['cores']} cores ({m['cpu']}), Python {m['python']}; "
        f"N = {args.jobs:,}, concurrency {args.concurrency}, {args.runs} pairs of runs, "
        f"took {minutes:.0f} min; "
        f"base {base_rev}, head {head_rev}.",
        "",
        "| metric | base (median) | head (median) | head / base | beyond base's spread |",
        "|---|---:|---:|---:|---|",
    ]
    for key, label, higher in METRICS:
        b_vals = [v for v in base.get(key, []) if v is not None]
        h_vals = [v for v in head.get(key, []) if v is not None]
        b, h = median(b_vals), median(h_vals)
        if b is None and h is None:
            continue  # a scenario this invocation did not run
        if b is None or h is None:
            out.append(f"| {label} | n/a | n/a | n/a | |")
            continue
        if key.endswith("_us"):
            spec = "{:,.0f}"
        else:
            spec = "{:.1%}" if key.startswith("cpu") else ("{:,.0f}" if higher else "{:.2f}")
        ratio = h / b if b else float("nan")
        lo, hi = min(b_vals), max(b_vals)
        if lo <= h <= hi:
            verdict = "no (within)"
        else:
            better = (h > hi) if higher else (h < lo)
            verdict = "yes, better" if better else "yes, worse"
        out.append(f"| {label} | {spec.format(b)} | {spec.format(h)} | {ratio:.2f} | {verdict} |")
    out.append("")
    return _report.wrap("\n".join(out))


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", "bench/ab.py", *argv])
    base_rev = subprocess.run(
        ["git", "rev-parse", "--short", args.base], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    started = datetime.datetime.now()
    base: dict[str, list] = {}
    head: dict[str, list] = {}
    head_rev = "?"
    head_ref = None
    if args.head:
        head_ref = subprocess.run(
            ["git", "rev-parse", "--short", args.head], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="teguh-ab-") as tmp:
        for run in range(args.runs):
            order = [(base_rev, base), (head_ref, head)]
            if run % 2:
                order.reverse()
            for ref, into in order:
                label = "base" if into is base else "head"
                data = one_run(args, ref, Path(tmp) / f"{run}-{label}.json", label)
                if into is head:
                    head_rev = data["revision"]
                for key, values in data["results"].get("teguh", {}).items():
                    if isinstance(values, list):
                        into.setdefault(key, []).extend(values)
                for error in data["errors"]:
                    print(f"run {run} {label}: {error}", file=sys.stderr)
    minutes = (datetime.datetime.now() - started).total_seconds() / 60
    text = render(args, command, base_rev, head_rev, base, head, started, minutes)
    print(text)
    if args.write:
        _report.write_section(text, section=SECTION)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main(sys.argv[1:]))
