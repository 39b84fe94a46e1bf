"""Tables, the machine description, and the section of docs/benchmarks.md the run rewrites."""

from __future__ import annotations

import os
import platform
import statistics
import textwrap
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
SECTION = "## Side by side with peers"
STEPS_SECTION = "## Durable steps"
SCALE_SECTION = "## Scale: worker processes and concurrency"
TIMES = "\u00d7"

# (key, label, format, better): better is "high" or "low"; ratios are always teguh / peer
METRICS = [
    ("single_spawn", "single spawn, one thread (jobs/s)", "{:,.0f}", "high"),
    ("batch_spawn", "batch spawn, {batch:,} per call (jobs/s)", "{:,.0f}", "high"),
    ("drain", "drain of {n:,} pre-filled jobs (jobs/s)", "{:,.0f}", "high"),
    ("wake_median", "wake-up, spawn to handler start, median (ms)", "{:.1f}", "low"),
    ("wake_p99", "wake-up, p99 (ms)", "{:.1f}", "low"),
    ("dead_pages_per_job", "dead tuples after the drain, per job, counted on the pages", "{:.2f}", "low"),
    ("dead_per_job", "dead tuples after the drain, per job, per `n_dead_tup`", "{:.2f}", "low"),
    ("size_mb", "size of the peer's tables after the drain (MB)", "{:.1f}", "low"),
    ("cpu_worker", "drain CPU: worker process (share of {cores} cores)", "{:.0%}", None),
    ("cpu_pg", "drain CPU: PostgreSQL (share of {cores} cores)", "{:.0%}", None),
    ("cpu_worker_us", "drain CPU per job: worker process (µs)", "{:,.0f}", "low"),
    ("cpu_pg_us", "drain CPU per job: PostgreSQL (µs)", "{:,.0f}", "low"),
    ("cpu_us", "drain CPU per job: worker + PostgreSQL (µs)", "{:,.0f}", "low"),
    ("leftover", "dispatch + lease rows left after the drain", "{:,.0f}", None),
]


# the durable-steps scenario (bench/scenarios.py durable_steps)
STEPS_METRICS = [
    ("steps_rate", "{n:,} pre-filled tasks of 3 steps (tasks/s)", "{:,.0f}", "high"),
    ("steps_dead_pages", "dead tuples per step, counted on the pages", "{:.2f}", "low"),
    ("steps_dead", "dead tuples per step, per `n_dead_tup`", "{:.2f}", "low"),
    ("steps_size_mb", "size of the peer's tables afterwards (MB)", "{:.1f}", "low"),
    ("steps_cpu_worker", "CPU: worker process (share of {cores} cores)", "{:.0%}", None),
    ("steps_cpu_pg", "CPU: PostgreSQL (share of {cores} cores)", "{:.0%}", None),
    ("steps_cpu_us", "CPU per task: worker + PostgreSQL (µs)", "{:,.0f}", "low"),
]


def median_or_none(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, spec: str) -> str:
    return "n/a" if value is None else spec.format(value)


def results_table(
    results: dict[str, dict[str, list]], peers: list[str], n: int, batch: int, metrics: list | None = None
) -> str:
    """Medians per metric and peer, then one column per peer with teguh/peer."""
    metrics = METRICS if metrics is None else metrics
    others = [p for p in peers if p != "teguh"]
    header = ["", *peers, *[f"teguh/{p}" for p in others if "teguh" in peers]]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for key, label, spec, better in metrics:
        medians = {p: median_or_none(results[p].get(key, [])) for p in peers}
        if all(v is None for v in medians.values()):
            continue
        row = [label.format(n=n, batch=batch, cores=os.cpu_count()), *[fmt(medians[p], spec) for p in peers]]
        if "teguh" in peers:
            for p in others:
                ours, theirs = medians["teguh"], medians[p]
                if better is None or ours is None or not theirs:
                    row.append("")
                else:
                    row.append(f"{ours / theirs:.2f}{TIMES}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def pgbench_table(pgbench: dict[int, float]) -> str:
    lines = ["| clients | tps |", "|---:|---:|"]
    lines += [f"| {clients} | {tps:,.0f} |" for clients, tps in pgbench.items()]
    return "\n".join(lines)


def scaling_table(scaling: dict[int, list[float]]) -> str:
    lines = [
        "| worker processes | drain (jobs/s), median | vs 1 process | runs that finished |",
        "|---:|---:|---:|---:|",
    ]
    base = median_or_none(scaling.get(1, []))
    for procs, rates in sorted(scaling.items()):
        med = median_or_none(rates)
        ratio = f"{med / base:.2f}{TIMES}" if med and base else ""
        finished = sum(1 for rate in rates if rate is not None)
        lines.append(f"| {procs} | {fmt(med, '{:,.0f}')} | {ratio} | {finished} of {len(rates)} |")
    return "\n".join(lines)


def memory_table(rows: list[dict[str, float]]) -> str:
    lines = [
        "| tasks processed | worker RSS (MiB) | vs first | drain since previous row (jobs/s) |",
        "|---:|---:|---:|---:|",
    ]
    first = rows[0]["rss_mib"]
    for row in rows:
        growth = row["rss_mib"] / first
        lines.append(
            f"| {row['processed']:,} | {row['rss_mib']:.1f} | {growth:.2f}{TIMES} | {row['rate']:,.0f} |"
        )
    rss = {row["target"]: row["rss_mib"] for row in rows}
    if 100_000 in rss and 1_000_000 in rss:
        change = rss[1_000_000] / rss[100_000] - 1
        lines += [
            "",
            f"From 100,000 to 1,000,000 tasks the worker's RSS changed by {change:+.0%} (goal: within 10 %).",
        ]
    return "\n".join(lines)


def machine() -> dict[str, str]:
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return {
        "cores": str(os.cpu_count()),
        "cpu": model,
        "memory": f"{mem_kib / 1024 / 1024:.0f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def wrap(markdown: str, width: int = 80) -> str:
    """Wrap prose lines and list items like the rest of the docs; tables, headings and code stay."""
    out, fenced = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if fenced or line.startswith(("|", "#", "```")) or len(line) <= width:
            out.append(line)
            continue
        stripped = line.lstrip()
        indent = line[: len(line) - len(stripped)]
        bullet = "- " if stripped.startswith("- ") else ""
        out.append(
            textwrap.fill(
                stripped,
                width,
                initial_indent=indent,
                subsequent_indent=indent + " " * len(bullet),
                break_long_words=False,
                break_on_hyphens=False,
            )
        )
    return "\n".join(out) + "\n"


def write_section(text: str, doc: Path = DOC, section: str = SECTION) -> None:
    """Replace the section (up to the next `## ` heading) or append it; the rest of the file stays."""
    old = doc.read_text() if doc.exists() else "# Benchmarks\n"
    lines = old.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == section), None)
    if start is None:
        new = old.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n"
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        tail = "".join(lines[end:])
        new = "".join(lines[:start]) + text.rstrip("\n") + "\n" + ("\n" + tail if tail else "")
    doc.write_text(new)
